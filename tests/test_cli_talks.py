"""The command line tells the person what it did, answers --help without torch, labels its overlays."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import EXAMPLES, ROOT
from micam_core.cli import main
from micam_core.outputs import LABEL_BAND

HEAVY = ("torch", "numpy", "timm", "PIL", "pyarrow", "gradio")


def _modules_after(argv: list[str]) -> tuple[subprocess.CompletedProcess, set[str]]:
    code = ("import runpy, sys, json\n"
            f"sys.argv = ['micam_core', *{argv!r}]\n"
            "try:\n    runpy.run_module('micam_core', run_name='__main__', alter_sys=True)\n"
            "except SystemExit:\n    pass\n"
            "sys.stderr.write('\\nMODULES=' + json.dumps(sorted(sys.modules)))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    loaded = set(json.loads(proc.stderr.rsplit("MODULES=", 1)[1]))
    return proc, loaded


def test_help_answers_without_loading_torch():
    for argv in (["--help"], ["explain", "--help"], ["evaluate", "--help"], ["summarize", "--help"]):
        proc, loaded = _modules_after(argv)
        assert "usage:" in proc.stdout, proc.stderr
        heavy = sorted(m for m in HEAVY if m in loaded)
        assert not heavy, f"{argv} imported {heavy}"
    assert "micam" in proc.stdout or "results" in proc.stdout


@pytest.mark.slow
def test_explain_prints_target_files_and_metrics(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", str(EXAMPLES / "coffee.jpg"), "--out", str(out), "--methods", "micam,gradcam",
                 "--metrics", "--steps", "4"]) == 0
    said = capsys.readouterr().out
    manifest = json.loads((out / "coffee.json").read_text())
    target = manifest["target"]
    assert f"target class {target['index']} {target['label']}" in said
    assert f"in {out}" in said
    written = sorted(p.name for p in out.iterdir())
    for name in written:
        assert name in said, f"{name} written but not reported"
    for label in ("MI CAM", "Grad-CAM", "Random map (baseline)", "Centred Gaussian (baseline)"):
        assert label in said
    auc = manifest["methods"]["micam"]["deletion_auc"]
    assert f"{round(auc, 4)}" in said


def test_explain_without_metrics_prints_no_table(tmp_path, capsys):
    assert main(["explain", str(EXAMPLES / "rocket.jpg"), "--out", str(tmp_path), "--methods", "gradcam",
                 "--target", "0"]) == 0
    said = capsys.readouterr().out
    assert "target class 0" in said and "top-1 is" in said  # the asked-for class is not the top-1
    assert "deletion AUC" not in said


def test_overlays_png_labels_every_method(tmp_path):
    methods = ["micam", "gradcam", "eigencam"]
    assert main(["explain", str(EXAMPLES / "chelsea_cat.jpg"), "--out", str(tmp_path),
                 "--methods", ",".join(methods)]) == 0
    strip = np.asarray(Image.open(tmp_path / "chelsea_cat_overlays.png").convert("L"))
    single = np.asarray(Image.open(tmp_path / "chelsea_cat_micam.png").convert("L"))
    assert strip.shape == (single.shape[0] + LABEL_BAND, single.shape[1] * len(methods))
    for i in range(len(methods)):
        band = strip[:LABEL_BAND, i * single.shape[1]:(i + 1) * single.shape[1]]
        assert (band < 100).sum() > 30, f"no label text above overlay {i}"
        assert np.array_equal(strip[LABEL_BAND:, i * single.shape[1]:(i + 1) * single.shape[1]],
                              np.asarray(Image.open(tmp_path / f"chelsea_cat_{methods[i]}.png").convert("L")))


@pytest.mark.slow
def test_interrupted_explain_says_so(tmp_path):
    code = ("import signal, threading, os\n"
            # a shell's background job inherits SIGINT ignored; a terminal's Ctrl-C reaches Python's own handler
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from micam_core import methods\n"
            "real = methods.explain\n"
            "def slow(*a, **k):\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    return real(*a, **k)\n"
            "methods.explain = slow\n"
            "from micam_core.cli import main\n"
            f"raise SystemExit(main(['explain', {str(EXAMPLES / 'coffee.jpg')!r}, '--out', {str(tmp_path)!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 130
    assert "Traceback" not in proc.stderr and "interrupted" in proc.stderr


def test_every_public_name_resolves():
    import micam_core

    for name in micam_core.__all__:
        assert getattr(micam_core, name) is not None, name


def test_app_without_gradio_says_what_to_install():
    code = "import sys, runpy; sys.modules['gradio'] = None; runpy.run_path('app.py', run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "needs gradio" in proc.stderr and "pip install -r requirements.txt" in proc.stderr
