"""Model specs, class names, layers, refusals and the bounded cache (all offline)."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from timm.models._hub import save_for_hf

from micam_core import ModelCache, ModelLoadError, NotACNNError, explain, load_model
from micam_core.models import normalize_spec


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A small timm CNN with its own label names, saved in Hub layout (config.json + safetensors)."""
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", num_classes=3)
    folder = tmp_path_factory.mktemp("tiny_cnn")
    save_for_hf(model, folder, model_config={"label_names": ["apple", "banana", "cherry"]},
                safe_serialization=True)
    return folder


def test_spec_forms():
    assert normalize_spec("resnet50.a1_in1k") == "resnet50.a1_in1k"
    assert normalize_spec("timm/resnet50.a1_in1k") == "hf-hub:timm/resnet50.a1_in1k"
    assert normalize_spec("hf-hub:timm/resnet50.a1_in1k@main") == "hf-hub:timm/resnet50.a1_in1k@main"
    assert normalize_spec("hf_hub:timm/x") == "hf-hub:timm/x"
    assert normalize_spec("https://huggingface.co/timm/resnet18.a1_in1k") == "hf-hub:timm/resnet18.a1_in1k"
    for bad in ["", "   ", "not a model!!", "a/b/c/d", "../../etc/passwd"]:
        with pytest.raises(ModelLoadError):
            normalize_spec(bad)


def test_bundled_model(bundled):
    assert bundled.spec == "bundled:efficientnet_lite0"
    assert bundled.default_layer == "bn2"
    assert bundled.data_config["mean"] == (0.5, 0.5, 0.5)
    assert bundled.class_names[281] == "tabby, tabby cat" and len(bundled.class_names) == 1000
    assert not bundled.model.training
    assert "blocks.6" in bundled.candidate_layers and bundled.candidate_layers[0] == "bn2"


def test_local_dir_with_its_own_label_names(tiny_dir, cat_path):
    loaded = load_model(f"local-dir:{tiny_dir}", device="cpu")
    assert loaded.class_names == ["apple", "banana", "cherry"]
    assert loaded.default_layer == "layer4"
    exp = explain(loaded, cat_path, target="banana")
    assert exp.target == 1 and exp.target_label == "banana"


def test_local_dir_can_be_switched_off(tiny_dir):
    with pytest.raises(ModelLoadError, match="switched off"):
        load_model(f"local-dir:{tiny_dir}", allow_local=False)


def test_vision_transformer_loads_with_its_blocks_as_layers(tmp_path, cat_path):
    save_for_hf(timm.create_model("vit_tiny_patch16_224", num_classes=2), tmp_path, safe_serialization=True)
    loaded = load_model(f"local-dir:{tmp_path}", device="cpu")
    assert loaded.default_layer == "blocks.11.norm1"
    assert {"blocks.11", "blocks.10", "blocks.0"} <= set(loaded.candidate_layers)
    info = next(i for i in loaded.layers if i.name == "blocks.10")
    assert (info.layout, info.prefix, info.channels, info.height, info.width) == ("NLC", 1, 192, 14, 14)
    assert info.describe() == "blocks.10  (192 x 14 x 14 tokens)"
    exp = explain(loaded, cat_path, layer="blocks.10")
    assert exp.maps["micam"].shape == (224, 224) and exp.weights["gradcam"].shape == (192,)


def test_a_model_without_a_grid_is_refused_with_the_reason(tmp_path):
    model = timm.create_model("vit_tiny_patch16_224", num_classes=0)  # a feature extractor, no classes
    save_for_hf(model, tmp_path, safe_serialization=True)
    with pytest.raises(NotACNNError, match="VisionTransformer is not an image classifier"):
        load_model(f"local-dir:{tmp_path}", device="cpu")


def test_folder_that_is_not_a_timm_model(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="not a timm model"):
        load_model(f"local-dir:{tmp_path}")
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(f"local-dir:{tmp_path / 'missing'}")


def test_unknown_timm_name_suggests_close_ones():
    with pytest.raises(ModelLoadError, match="Did you mean.*resnet50"):
        load_model("resnet5O")


def test_hub_model_missing_offline_says_so():
    with pytest.raises(ModelLoadError, match="offline|not in the local"):
        load_model("timm/surely-not-cached-model")


def test_cache_is_lru_and_bounded(tiny_dir):
    calls = []

    def fake_loader(spec, **_):
        calls.append(spec)
        return load_model(f"local-dir:{tiny_dir}", device="cpu")

    cache = ModelCache(max_models=2, loader=fake_loader)
    cache.get("timm/a")
    cache.get("timm/b")
    cache.get("timm/a")  # hit: a becomes most recent
    cache.get("timm/c")  # evicts b
    assert cache.specs() == ["hf-hub:timm/a", "hf-hub:timm/c"]
    assert calls == ["timm/a", "timm/b", "timm/c"]
    small = ModelCache(max_models=5, max_bytes=1, loader=fake_loader)
    small.get("timm/a")
    small.get("timm/b")
    assert small.specs() == ["hf-hub:timm/b"], "byte bound keeps only the newest model"


def test_a_hanging_fetch_is_abandoned_in_bounded_time(monkeypatch):
    import time

    from micam_core import sources

    monkeypatch.setattr(sources, "create_from_spec", lambda *a, **k: time.sleep(5))
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="longer than 1 s"):
        load_model("timm/slow-repo", timeout=1.0)
    assert time.perf_counter() - start < 3.0


@pytest.mark.parametrize("spec", ["resnet18.a1_in1k", "resnet18", "timm/resnet18.a1_in1k"])
def test_timm_names_with_and_without_tag_load_from_the_hub_cache(spec, cat_path):
    from conftest import add_to_hub_cache

    torch.manual_seed(0)
    add_to_hub_cache("timm/resnet18.a1_in1k", model=timm.create_model("resnet18"))
    loaded = load_model(spec, device="cpu")
    assert loaded.revision == "0123456789abcdef0123456789abcdef01234567"
    assert loaded.default_layer == "layer4" and loaded.class_names[281] == "tabby, tabby cat"
    assert loaded.data_config["crop_pct"] == 0.95  # the a1_in1k pretrained config, not a default
    assert explain(loaded, cat_path, target="tabby").target == 281
