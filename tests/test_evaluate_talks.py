"""`micam evaluate` as a person meets it: missing extras, Ctrl-C / SIGTERM, parts flushed early, threads."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import tomllib
from packaging.requirements import Requirement
from test_evaluate import photos, tiny_spec  # noqa: F401 (fixtures)

from conftest import ROOT
from micam_core.evaluation import EXTRAS
from micam_core.evaluation.cli import idle_cores
from micam_core.evaluation.local import run_local
from micam_core.evaluation.store import ResultStore
from micam_core.view import View


def test_extras_list_is_the_eval_extra_of_pyproject():
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["eval"]
    assert sorted(Requirement(r).name for r in extra) == sorted(EXTRAS)


@pytest.mark.parametrize("hidden", EXTRAS)
def test_each_missing_extra_gets_a_sentence(hidden, tmp_path):
    args = ["evaluate", "--images", str(tmp_path), "--out", str(tmp_path / "out")]
    args += {"datasets": ["--dataset", "imagefolder"], "ray": ["--engine", "ray"]}.get(hidden, [])
    code = (f"import sys; sys.modules[{hidden!r}] = None\n"
            "from micam_core.cli import main\n"
            f"raise SystemExit(main({args!r}))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"needs {hidden}" in proc.stderr and "pip install" in proc.stderr and "[eval]" in proc.stderr


def test_an_extra_missing_deeper_down_still_gets_the_sentence(tmp_path):
    code = ("import sys, importlib.util\n"
            "real = importlib.util.find_spec\n"  # the up-front check passes; the import itself then fails
            "importlib.util.find_spec = lambda name, *a: real('json') if name == 'pandas' else real(name, *a)\n"
            "sys.modules['pandas'] = None\n"
            "from micam_core.cli import main\n"
            f"raise SystemExit(main(['summarize', {str(tmp_path)!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == 2 and "needs pandas" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_saves_finished_images_and_says_how_to_resume(signum, tmp_path, photos, tiny_spec):  # noqa: F811
    many = tmp_path / "many"
    for i in range(4):
        shutil.copytree(photos, many / f"copy{i}")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "micam_core", "evaluate", "--images", str(many), "--models", tiny_spec,
           "--steps", "3", "--methods", "micam", "--out", str(out), "--no-progress", "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not ResultStore(out).parts() and proc.poll() is None:
        time.sleep(0.05)  # the first part comes after 8 images (the batch) or 5 s, whichever is first
    assert proc.poll() is None, "the run finished before it could be stopped"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err, err
    rows = ResultStore(out).read().to_pandas()
    saved = rows["image_id"].nunique()
    assert 0 < saved < 32
    assert f"{saved} images saved in {out}; rerun the same command with --resume" in err
    done = subprocess.run(cmd + ["--resume", "--no-summary"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = ResultStore(out).read().to_pandas()
    assert rows["image_id"].nunique() == 32 and not rows.duplicated(["model", "method", "image_id"]).any()


def test_parts_are_flushed_after_a_few_seconds_not_only_per_batch(tmp_path, photos, tiny_spec):  # noqa: F811
    from micam_core import load_model
    from micam_core.evaluation.records import Source, iter_records

    loaded = load_model(tiny_spec, device="cpu")
    records = list(iter_records(Source(images=str(photos / "3")), None))
    settings = View().replace(methods=("micam",), steps=2)
    by_time, by_batch = ResultStore(tmp_path / "time"), ResultStore(tmp_path / "batch")
    run_local(loaded, records, settings, by_time, batch_size=8, flush_seconds=0.0, target="top1")
    run_local(loaded, records, settings, by_batch, batch_size=8, flush_seconds=1e9, target="top1")
    assert len(by_time.parts()) == len(records) == 3  # every image written as soon as the time was up
    assert len(by_batch.parts()) == 1  # only the final flush: the batch never filled


def test_threads_follow_the_idle_cores(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (8.2, 8.0, 7.5))
    assert idle_cores() == 1  # a busy 2-core machine: one thread
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.3, 0.2, 0.1))
    assert idle_cores() == 16
    monkeypatch.setattr(os, "getloadavg", lambda: (5.6, 5.0, 5.0))
    assert idle_cores() == 10


def test_thread_choice_respects_the_flag_and_omp_and_is_undone(monkeypatch, tmp_path):
    from types import SimpleNamespace

    import torch

    from micam_core.evaluation.cli import _set_threads

    plan = SimpleNamespace(engine="local")
    start = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _set_threads(None, plan) == (0, 0) and torch.get_num_threads() == start  # the person's setting
    try:
        assert _set_threads(1, plan) == (start, 1)
    finally:
        torch.set_num_threads(start)
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(os, "getloadavg", lambda: (50.0, 50.0, 50.0))
    try:
        assert _set_threads(None, plan)[1] == 1  # a saturated machine: one thread
    finally:
        torch.set_num_threads(start)
