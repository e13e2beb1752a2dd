"""`micam evaluate` / `micam summarize`: rows, failures, resume after kill -9, statistics, data sets.

A tiny random-weight resnet10t at 64 px (a local-dir model) keeps these fast; the Ray engine tests
are in test_evaluate_ray.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import timm
import torch

import micam_core
from conftest import EXAMPLES, ROOT
from micam_core.cli import main
from micam_core.evaluation.store import ResultStore
from micam_core.evaluation.summary import bootstrap_ci, summarize, wilcoxon_p

DEFAULT = micam_core.DEFAULT_METHODS  # what evaluate runs by default
ROWS_PER_IMAGE = len(DEFAULT) + 2  # every method, then the random and centred baselines


@pytest.fixture(scope="session")
def tiny_spec(tmp_path_factory) -> str:
    from timm.models._hub import save_for_hf

    folder = tmp_path_factory.mktemp("tiny_model")
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", num_classes=10)
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, 64, 64), "crop_pct": 1.0}
    save_for_hf(model, str(folder), safe_serialization=True)
    return f"local-dir:{folder}"


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """Six photos in label folders 3 and 7, one photo without a label folder, and one broken file."""
    root = tmp_path_factory.mktemp("photos")
    for label, names in {"3": ("chelsea_cat", "coffee", "rocket"), "7": ("astronaut", "coffee", "rocket")}.items():
        (root / label).mkdir()
        for name in names:
            shutil.copy(EXAMPLES / f"{name}.jpg", root / label / f"{name}.jpg")
    shutil.copy(EXAMPLES / "coffee.jpg", root / "unlabelled.jpg")
    (root / "7" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def _rows(out):
    return ResultStore(out).read().to_pandas()


def _evaluate(out, photos, tiny_spec, *extra):
    return main(["evaluate", "--images", str(photos), "--labels", "folders", "--models", tiny_spec,
                 "--steps", "3", "--out", str(out), "--no-progress", *extra])


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, photos, tiny_spec):
    """The local engine on one thread, as each Ray worker here (num_cpus=1): rows must then be bit-identical."""
    out = tmp_path_factory.mktemp("local_run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert _evaluate(out, photos, tiny_spec, "--batch-size", "3", "--threads", "1") == 0
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.mark.slow
def test_one_row_per_model_method_image_with_failures_recorded(local_run, tiny_spec):
    rows = _rows(local_run)
    assert len(rows) == 8 * ROWS_PER_IMAGE
    assert not rows.duplicated(["model", "method", "image_id"]).any()
    assert set(rows["method"]) == {*DEFAULT, "random", "centre"}
    broken = rows[rows["image_id"] == "7/broken.png"]
    assert (broken["status"] == "failed").all() and broken["error"].str.contains("ImageError").all()
    ok = rows[rows["status"] == "ok"]
    labelled = ok[ok["image_id"].str.match(r"[37]/")]
    assert (labelled["target"] == labelled["label"].astype(int)).all() and (labelled["target_source"] == "label").all()
    assert (labelled["top1_correct"] == (labelled["top1"] == labelled["label_index"])).all()
    free = ok[ok["image_id"] == "unlabelled.jpg"]
    assert (free["target"] == free["top1"]).all() and free["top1_correct"].isna().all()
    assert ok["deletion_curve"].map(len).eq(4).all() and ok["seconds"].gt(0).all()
    assert ok["deletion_auc"].between(0, 1).all() and ok["region_fraction"].between(0, 1).all()
    config = json.loads((local_run / "run.json").read_text())
    assert config["settings"]["steps"] == 3 and {"torch", "pyarrow", "ray"} <= set(config["versions"])


@pytest.mark.slow
def test_summary_tables_match_the_rows(local_run):
    report = summarize(local_run, resamples=500)
    ok = _rows(local_run).query("status == 'ok'")
    mine = report.per_method.set_index(["method", "metric"])
    for method in ("micam", "random"):
        x = ok[ok["method"] == method]["deletion_auc"]
        cell = mine.loc[(method, "deletion_auc")]
        assert cell["mean"] == pytest.approx(x.mean()) and cell["ci_low"] <= cell["mean"] <= cell["ci_high"]
    pair = report.paired.set_index(["other", "metric"]).loc[("centre", "insertion_auc")]
    ref = ok[ok["method"] == "micam"].set_index("image_id")["insertion_auc"]
    other = ok[ok["method"] == "centre"].set_index("image_id")["insertion_auc"]
    d = (ref - other.loc[ref.index]).to_numpy()
    assert pair["n"] == 7 and pair["mean_diff"] == pytest.approx(d.mean())
    assert pair["win_rate"] == pytest.approx(np.mean((d > 0) + 0.5 * (d == 0)))
    assert report.accuracy.iloc[0]["labelled"] == 6
    for name in ("summary.md", "summary.csv", "paired.csv"):
        assert (local_run / name).stat().st_size > 100
    assert len(list(local_run.glob("curves_*.png"))) == 1 and len(list(local_run.glob("metrics_*.png"))) == 1
    assert "Wilcoxon" in report.markdown and "MI CAM" in report.markdown


def test_statistics_helpers_against_known_values():
    assert bootstrap_ci(np.full(10, 2.5)) == (2.5, 2.5)
    lo, hi = bootstrap_ci(np.random.default_rng(1).normal(0, 1, 400))
    assert lo < 0 < hi and hi - lo == pytest.approx(2 * 1.96 / 20, rel=0.25)
    assert np.isnan(wilcoxon_p(np.zeros(5)))
    assert wilcoxon_p(np.arange(1, 11)) == pytest.approx(0.001953125)  # all 10 positive: 2 / 2**10


def test_resume_refuses_other_settings_and_existing_results(local_run, photos, tiny_spec, capsys):
    assert _evaluate(local_run, photos, tiny_spec) == 2
    assert "--resume" in capsys.readouterr().err
    assert _evaluate(local_run, photos, tiny_spec, "--resume", "--threshold", "0.4") == 2
    assert "settings" in capsys.readouterr().err
    before = len(_rows(local_run))
    assert _evaluate(local_run, photos, tiny_spec, "--resume", "--no-summary") == 0  # nothing left to do
    assert len(_rows(local_run)) == before


@pytest.mark.parametrize("flag,value", [("--threshold", "2"), ("--steps", "0"), ("--methods", "micam,nosuch"),
                                        ("--fill", "sideways"), ("--upsampling", "cubic")])
def test_bad_values_are_refused_as_explain_refuses_them_and_nothing_is_written(tmp_path, photos, tiny_spec, capsys,
                                                                                flag, value):
    out = tmp_path / "o"
    assert main(["explain", str(EXAMPLES / "coffee.jpg"), "--out", str(out), "--metrics", flag, value]) == 2
    said = capsys.readouterr().err
    assert said.startswith("error: ") and value.split(",")[-1] in said
    assert _evaluate(out, photos, tiny_spec, flag, value) == 2
    assert capsys.readouterr().err == said
    assert not out.exists()


@pytest.mark.slow
def test_resume_after_kill_9_has_no_duplicate_and_no_missing_row(tmp_path, photos, tiny_spec):
    many = tmp_path / "many"
    for i in range(4):
        shutil.copytree(photos, many / f"copy{i}")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "micam_core", "evaluate", "--images", str(many), "--models", tiny_spec,
           "--steps", "3", "--methods", "micam", "--batch-size", "1", "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(ResultStore(out).parts()) < 3 and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _rows(out)
    assert 0 < partial["image_id"].nunique() < 32, "the run must be killed mid-way"
    done = subprocess.run(cmd + ["--resume", "--no-summary"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    rows = _rows(out)
    assert not rows.duplicated(["model", "method", "image_id"]).any()
    assert rows["image_id"].nunique() == 32 and len(rows) == 32 * 3
    assert not list((out / "rows").glob(".*.tmp"))
    for part in ResultStore(out).parts():  # every part file is complete and readable
        assert pq.read_table(part).num_rows % 3 == 0


def test_local_imagefolder_dataset_works_offline(tmp_path, photos, tiny_spec):
    folder = tmp_path / "folder"  # imagefolder labels need every image one level down
    shutil.copytree(photos, folder, ignore=shutil.ignore_patterns("unlabelled.jpg"))
    out = tmp_path / "out"
    code = main(["evaluate", "--dataset", "imagefolder", "--data-dir", str(folder), "--split", "train",
                 "--models", tiny_spec, "--steps", "2", "--methods", "gradcam", "--limit", "4", "--out", str(out),
                 "--no-progress", "--no-summary"])
    assert code == 0
    rows = _rows(out)
    assert rows["image_id"].nunique() == 4 and len(rows) == 4 * 3
    assert set(rows["label"]) <= {"3", "7"} and rows["label"].notna().all()
    assert rows["image_id"].str.startswith("train/").all()
    ok = rows[rows["status"] == "ok"]
    assert (ok.loc[ok["label"].notna(), "target_source"] == "label").all()


# ---- the Ray engine (local Ray on 2 CPUs, started once for this module) ------------------------

@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    from micam_core.evaluation.ray_engine import start_ray

    started = not ray.is_initialized()
    start_ray(num_cpus=2)
    yield ray
    if started:
        ray.shutdown()


def _comparable(out):
    rows = _rows(out).drop(columns=["seconds"]).sort_values(["model", "method", "image_id"]).reset_index(drop=True)
    return rows


def _assert_same_rows(a, b):
    assert list(a["image_id"]) == list(b["image_id"]) and list(a["method"]) == list(b["method"])
    for col in a.columns:
        left, right = a[col].tolist(), b[col].tolist()
        if col.endswith("_curve"):
            left, right = [list(x) if x is not None else None for x in left], [list(x) if x is not None else None
                                                                                 for x in right]
        assert left == right or all(x == y or (x != x and y != y) for x, y in zip(left, right)), col


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_engine_gives_the_local_engine_rows(ray_cluster, local_run, photos, tiny_spec, tmp_path):
    out = tmp_path / "ray"
    assert _evaluate(out, photos, tiny_spec, "--engine", "ray", "--batch-size", "2", "--no-summary") == 0
    _assert_same_rows(_comparable(out), _comparable(local_run))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_worker_that_dies_is_retried_without_losing_or_doubling_rows(ray_cluster, local_run, photos,
                                                                           tiny_spec, tmp_path):
    from micam_core.evaluation.ray_engine import run_ray
    from micam_core.evaluation.records import Source, iter_records
    from micam_core.view import View

    marker = tmp_path / "crashed"
    store = ResultStore(tmp_path / "ray")
    view = View().replace(methods=DEFAULT, steps=3)
    records = list(iter_records(Source(images=str(photos), labels="folders")))
    done = run_ray(micam_core.models.normalize_spec(tiny_spec), records, view, store, batch_size=2,
                   crash_once=("3/coffee.jpg", str(marker)))
    assert marker.exists(), "the worker did not die: the test tested nothing"
    assert done == 8
    rows = _comparable(store.root)
    assert not rows.duplicated(["model", "method", "image_id"]).any()
    _assert_same_rows(rows, _comparable(local_run))


def test_folder_labels_from_a_csv_and_readable_refusals(tmp_path, photos):
    from micam_core.errors import MicamError
    from micam_core.evaluation.records import Source, iter_records

    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\n3/coffee.jpg,espresso\nunlabelled.jpg,5\n")
    records = {r["image_id"]: r for r in iter_records(Source(images=str(photos), labels=str(labels)))}
    assert len(records) == 8 and records["3/coffee.jpg"]["label"] == "espresso"
    assert records["unlabelled.jpg"]["label"] == "5" and records["7/rocket.jpg"]["label"] is None
    assert [r["image_id"] for r in iter_records(Source(images=str(photos)), limit=2)] == ["3/chelsea_cat.jpg",
                                                                                          "3/coffee.jpg"]
    with pytest.raises(MicamError, match="no such file"):
        list(iter_records(Source(images=str(photos), labels=str(tmp_path / "missing.csv"))))
    with pytest.raises(MicamError, match="exactly one"):
        list(iter_records(Source()))


@pytest.mark.slow
def test_summarize_command_prints_the_tables(local_run, capsys):
    assert main(["summarize", str(local_run), "--bootstrap", "200"]) == 0
    out = capsys.readouterr().out
    assert "| MI CAM |" in out and "Centred Gaussian (baseline)" in out
