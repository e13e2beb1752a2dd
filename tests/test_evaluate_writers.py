# ruff: noqa: F811  (pytest fixtures imported from test_evaluate)
"""One writer per results folder, and sentences instead of tracebacks for every broken input of evaluate/summarize.

Round 3: two runs on one --out gave 48 rows for 8 images; non-UTF-8 labels, a file as --out, a read-only
--out, a corrupted part file and a corrupted run.json gave tracebacks; --resume could mix devices.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_evaluate import ROWS_PER_IMAGE, _evaluate, _rows, photos, tiny_spec  # noqa: F401

from conftest import ROOT
from micam_core.cli import main
from micam_core.errors import MicamError
from micam_core.evaluation.lock import LOCK_FILE, RunLock, holder
from micam_core.evaluation.store import ResultStore
from micam_core.models import resolve_device

REFUSE_WITHIN_S = 5.0


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.slow
def test_a_second_writer_is_refused_within_5_s_and_the_rows_equal_one_run(tmp_path, photos, tiny_spec, capsys):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "micam_core", "evaluate", "--images", str(photos), "--labels", "folders",
           "--models", tiny_spec, "--steps", "3", "--out", str(out), "--no-progress", "--no-summary"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while holder(out / LOCK_FILE) != proc.pid and time.time() < deadline and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGSTOP)  # the first writer holds the lock, frozen mid-run
        assert holder(out / LOCK_FILE) == proc.pid, "the first run must hold the lock"
        start = time.perf_counter()
        code = _evaluate(out, photos, tiny_spec, "--steps", "8", "--no-summary")  # other settings: refused anyway
        seconds = time.perf_counter() - start
        err = _one_line_error(capsys)
        assert code == 2 and seconds < REFUSE_WITHIN_S, (code, seconds)
        assert f"process {proc.pid}" in err and "one run writes to a folder at a time" in err
        assert _evaluate(out, photos, tiny_spec, "--resume", "--no-summary") == 2  # --resume too
        _one_line_error(capsys)
    finally:
        proc.send_signal(signal.SIGCONT)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    rows = _rows(out)
    assert len(rows) == 8 * ROWS_PER_IMAGE and not rows.duplicated(["model", "method", "image_id"]).any()
    assert ResultStore(out).read_config()["settings"]["steps"] == 3
    assert holder(out / LOCK_FILE) is None  # released


def test_a_stale_lock_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_FILE).write_text(f"{dead.pid} somehost\n")
    with RunLock(tmp_path):
        assert holder(tmp_path / LOCK_FILE) == os.getpid()
        with pytest.raises(MicamError, match=f"process {os.getpid()}"):
            RunLock(tmp_path).acquire()  # a second holder in this very process is refused too (flock)
    with RunLock(tmp_path):  # released: free again
        pass


def test_broken_out_folders_get_sentences(tmp_path, photos, tiny_spec, capsys, monkeypatch):
    afile = tmp_path / "a_file"
    afile.write_text("x")
    assert _evaluate(afile, photos, tiny_spec) == 2
    assert "is a file, not a folder" in _one_line_error(capsys)
    assert _evaluate("/sys/micam_not_allowed", photos, tiny_spec) == 2  # even root may not create it
    assert "cannot be created" in _one_line_error(capsys)
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # a read-only folder (root ignores chmod)
    assert _evaluate(tmp_path / "ro", photos, tiny_spec) == 2
    assert "is not writable" in _one_line_error(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_folder(tmp_path, photos, tiny_spec, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    assert _evaluate(ro, photos, tiny_spec) == 2
    assert "not writable" in _one_line_error(capsys)


def test_labels_that_are_not_utf8_get_a_sentence(tmp_path, photos, tiny_spec, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_bytes(b"file,label\n3/coffee.jpg,caf\xe9\n")  # Latin-1
    assert main(["evaluate", "--images", str(photos), "--labels", str(labels), "--models", tiny_spec,
                 "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "not UTF-8" in _one_line_error(capsys)


@pytest.mark.parametrize("flag,value,words", [("--steps", "100000", "from 2 to 100"),
                                              ("--threshold", "nan", "from 0 to 1"),
                                              ("--steps", "1", "from 2 to 100")])
def test_absurd_settings_are_refused_before_any_work(tmp_path, photos, tiny_spec, capsys, flag, value, words):
    start = time.perf_counter()
    assert _evaluate(tmp_path / "o", photos, tiny_spec, flag, value) == 2
    assert words in _one_line_error(capsys) and time.perf_counter() - start < 5
    assert not (tmp_path / "o" / "rows").exists()


@pytest.fixture()
def small_run(tmp_path, photos, tiny_spec):
    out = tmp_path / "run"
    assert _evaluate(out, photos, tiny_spec, "--methods", "gradcam", "--steps", "2", "--batch-size", "4",
                     "--no-summary") == 0
    return out


@pytest.mark.slow
def test_corrupted_part_and_run_json_get_warnings_or_sentences(small_run, photos, tiny_spec, capsys, caplog):
    parts = ResultStore(small_run).parts()
    assert len(parts) == 2
    parts[0].write_bytes(b"PAR1 this is not parquet")
    caplog.clear()
    assert main(["summarize", str(small_run), "--bootstrap", "50"]) == 0  # the other part is summarised
    assert parts[0].name in caplog.text and "corrupted" in caplog.text
    assert _one_line_error(capsys)
    # --resume sets the corrupted part aside and redoes exactly its images
    assert _evaluate(small_run, photos, tiny_spec, "--methods", "gradcam", "--steps", "2", "--batch-size", "4",
                     "--resume", "--no-summary") == 0
    rows = _rows(small_run)
    assert rows["image_id"].nunique() == 8 and not rows.duplicated(["model", "method", "image_id"]).any()
    assert (small_run / "rows" / (parts[0].name + ".corrupt")).is_file()
    (small_run / "run.json").write_text('{"settings": ')
    assert _evaluate(small_run, photos, tiny_spec, "--methods", "gradcam", "--steps", "2", "--resume") == 2
    assert "run.json is corrupted" in _one_line_error(capsys)
    caplog.clear()
    assert main(["summarize", str(small_run), "--bootstrap", "50"]) == 0
    assert "run.json is corrupted" in caplog.text


def test_resume_refuses_another_device_or_library_version(small_run, photos, tiny_spec, capsys):
    config = json.loads((small_run / "run.json").read_text())
    assert config["device"] == str(resolve_device("auto"))
    again = ("--methods", "gradcam", "--steps", "2", "--batch-size", "4", "--resume", "--no-summary")
    assert _evaluate(small_run, photos, tiny_spec, *again, "--device", "meta") == 2
    assert "device" in _one_line_error(capsys)
    config["versions"]["torch"] = "0.0.1"
    (small_run / "run.json").write_text(json.dumps(config))
    assert _evaluate(small_run, photos, tiny_spec, *again) == 2
    assert "versions.torch" in _one_line_error(capsys)
