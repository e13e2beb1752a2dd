"""Shared fixtures. Tests never use the network: the Hub is switched off before any import."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # must precede the first import of huggingface_hub
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from pathlib import Path

import pytest
import timm
import torch

from micam_core import from_module, load_model

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def bundled():
    """The bundled ImageNet EfficientNet-Lite0 (offline)."""
    return load_model("bundled:efficientnet_lite0", device="cpu")


@pytest.fixture(scope="session")
def resnet18_random():
    """A timm resnet18 with random (seeded) weights, 1000 classes, 224 px."""
    torch.manual_seed(0)
    return from_module(timm.create_model("resnet18", pretrained=False), spec="resnet18-random", device="cpu")


@pytest.fixture(scope="session")
def cat_path() -> Path:
    return EXAMPLES / "chelsea_cat.jpg"


@pytest.fixture(scope="session")
def coffee_path() -> Path:
    return EXAMPLES / "coffee.jpg"
