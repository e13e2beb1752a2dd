"""A public Space gets every kind of input: each case gets a clear message and the next request works.

Everything goes through the running app's ``explain`` endpoint with gradio_client.
"""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
import torch
from gradio_client import handle_file
from PIL import Image

from conftest import EXAMPLES, add_to_hub_cache
from micam_app import work

CAT = EXAMPLES / "chelsea_cat.jpg"
STEPS = 2  # counterfactuals stay on, kept short


def call(client, image, model="bundled:efficientnet_lite0", **kwargs):
    kwargs.setdefault("steps", STEPS)
    return client.predict(handle_file(str(image)), model, api_name="/explain", **kwargs)


def refused(client, image, model="bundled:efficientnet_lite0", **kwargs) -> str:
    """The readable message of a refused request; then checks that a normal request still works."""
    with pytest.raises(Exception) as excinfo:
        call(client, image, model, **kwargs)
    message = str(excinfo.value)
    assert "Traceback" not in message and "upstream Gradio app has raised" not in message, message
    report = call(client, CAT)[4]
    assert report["target"]["index"] in {281, 282, 285}, "the next normal request must succeed"
    return message


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def encoded(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


# --- broken images ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_truncated_jpeg(client, tmp_path):
    data = CAT.read_bytes()
    assert "damaged or truncated" in refused(client, write(tmp_path, "cut.jpg", data[: len(data) // 2]))


def test_text_file_named_png(client, tmp_path):
    assert "not an image" in refused(client, write(tmp_path, "fake.png", b"hello, I am text"))


def test_empty_file(client, tmp_path):
    assert "empty" in refused(client, write(tmp_path, "empty.jpg", b""))


@pytest.mark.slow
def test_decompression_bomb(client, tmp_path):
    bomb = encoded(Image.new("1", (30000, 30000)), "PNG", optimize=True)
    assert len(bomb) < 500_000
    assert "limit is 40 MP" in refused(client, write(tmp_path, "bomb.png", bomb))


def test_file_over_the_size_limit(client, tmp_path):
    big = write(tmp_path, "big.jpg", CAT.read_bytes() + os.urandom(21 * 2**20))
    assert "limit is 20 MB" in refused(client, big)


# --- valid but unusual images -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def cat_rgb() -> Image.Image:
    return Image.open(CAT).convert("RGB")


def unusual_images(cat: Image.Image) -> dict[str, bytes]:
    rgba = cat.copy()
    rgba.putalpha(Image.new("L", cat.size, 200))
    frames = [cat, cat.transpose(Image.Transpose.FLIP_TOP_BOTTOM)]
    return {
        "one_pixel.png": encoded(Image.new("RGB", (1, 1), (120, 80, 40)), "PNG"),
        "large.jpg": encoded(cat.resize((6000, 4000)), "JPEG", quality=80),
        "cmyk.jpg": encoded(cat.convert("CMYK"), "JPEG", quality=95),
        "rgba.png": encoded(rgba, "PNG"),
        "palette.png": encoded(cat.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "one_bit.png": encoded(cat.convert("1"), "PNG"),
        "animated.gif": encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100),
    }


@pytest.mark.parametrize("name", ["one_pixel.png", "large.jpg", "cmyk.jpg", "rgba.png", "palette.png",
                                  "one_bit.png", "animated.gif"])
@pytest.mark.slow
def test_unusual_images_are_explained(client, tmp_path, cat_rgb, name):
    result = call(client, write(tmp_path, name, unusual_images(cat_rgb)[name]))
    for overlay in result[:3]:
        assert Image.open(overlay).size == (224, 224)
    report = result[4]
    assert len(report["predictions"]) == 5
    if name in ("large.jpg", "cmyk.jpg", "rgba.png", "palette.png", "animated.gif"):
        assert {p["index"] for p in report["predictions"]} & {281, 282, 285}, name


@pytest.mark.slow
def test_sixteen_bit_grey_predicts_like_its_8_bit_copy(client, tmp_path, cat_rgb):
    grey8 = np.asarray(cat_rgb.convert("L"))
    sixteen = write(tmp_path, "grey16.png", encoded(Image.fromarray(grey8.astype(np.uint16) * 257), "PNG"))
    eight = write(tmp_path, "grey8.png", encoded(Image.fromarray(grey8), "PNG"))
    a, b = call(client, sixteen)[4], call(client, eight)[4]
    assert [p["index"] for p in a["predictions"]] == [p["index"] for p in b["predictions"]]
    assert a["target"]["probability"] == pytest.approx(b["target"]["probability"], abs=1e-6)


@pytest.mark.slow
def test_exif_rotated_photo_is_upright(client, tmp_path, cat_rgb):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side; "rotate 90 CW to display"
    rotated = write(tmp_path, "rotated.jpg", encoded(cat_rgb.transpose(Image.Transpose.ROTATE_90), "JPEG",
                                                        quality=95, exif=exif))
    upright = write(tmp_path, "upright.jpg", encoded(cat_rgb, "JPEG", quality=95))
    a, b = call(client, rotated)[4], call(client, upright)[4]
    assert a["predictions"][0]["index"] == b["predictions"][0]["index"]
    assert a["target"]["probability"] == pytest.approx(b["target"]["probability"], abs=0.03)


# --- bad or hostile models --------------------------------------------------------------------------
@pytest.mark.parametrize("spec,words", [
    ("timm/never-heard-of-it", "not in the local Hugging Face cache"),
    ("resnet5O", "Did you mean"),
    ("hf-hub:micam-test/bert-like", "not a timm model"),
    ("../../../etc/passwd", "not a valid"),
])
def test_bad_models_are_refused(client, hub_models, spec, words):
    assert words in refused(client, CAT, model=spec)


def test_a_vision_transformer_from_the_hub_is_explained(client, hub_models):
    overlays = call(client, CAT, model=f"hf-hub:{hub_models['vit']}")
    report = overlays[4]
    assert report["layer"] == "blocks.11.norm1", report
    for path in overlays[:3]:
        assert Image.open(path).size == (224, 224)


def test_gated_and_private_repos_are_named_as_such():
    from micam_core.sources import _explain_failure

    gated = type("GatedRepoError", (Exception,), {})("401 Client Error")
    missing = type("RepositoryNotFoundError", (Exception,), {})("404 Client Error")
    assert "gated or private" in _explain_failure("hf-hub:org/secret", gated)
    assert "not found on the Hugging Face Hub" in _explain_failure("hf-hub:org/typo", missing)


@pytest.mark.slow
def test_model_over_the_size_limit(client, monkeypatch):
    import timm

    add_to_hub_cache("micam-test/bigger-resnet", model=timm.create_model("resnet18"))  # 45 MB of weights
    monkeypatch.setenv("MICAM_MAX_MODEL_MB", "30")  # the bundled model (18 MB) stays within it
    assert "the limit here is 30 MB" in refused(client, CAT, model="hf-hub:micam-test/bigger-resnet")


def test_hanging_hub_is_abandoned_in_bounded_time(client, monkeypatch):
    from micam_core import sources

    monkeypatch.setenv("MICAM_LOAD_TIMEOUT", "1")
    monkeypatch.setattr(sources, "create_from_spec", lambda *a, **k: time.sleep(4))
    start = time.perf_counter()
    assert "took longer than 1 s" in refused(client, CAT, model="timm/slow-hub-model")
    assert time.perf_counter() - start < 30


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['HF_HOME']}/pwned",))


@pytest.mark.slow
def test_pickled_weights_never_run_code(client, hub_models):
    import timm
    from timm.models._hub import save_for_hf

    folder = os.path.join(os.environ["HF_HOME"], "evil_src")
    save_for_hf(timm.create_model("resnet10t", num_classes=2), folder, safe_serialization=False)
    payload = io.BytesIO()
    torch.save({"conv1.weight": Evil()}, payload)
    with open(os.path.join(folder, "config.json"), "rb") as handle:
        config = handle.read()
    add_to_hub_cache("micam-test/evil-pickle", files={"config.json": config, "pytorch_model.bin": payload.getvalue()})
    message = refused(client, CAT, model="hf-hub:micam-test/evil-pickle")
    assert "Could not load" in message or "weights" in message
    assert not os.path.exists(os.path.join(os.environ["HF_HOME"], "pwned")), "the pickle ran code"


@pytest.mark.slow
def test_local_dir_only_when_the_operator_allows_it(client, tmp_path, monkeypatch):
    import timm
    from timm.models._hub import save_for_hf

    save_for_hf(timm.create_model("resnet10t", num_classes=4), tmp_path, safe_serialization=True)
    monkeypatch.delenv("MICAM_ALLOW_LOCAL_MODELS", raising=False)
    assert "switched off" in refused(client, CAT, model=f"local-dir:{tmp_path}")
    monkeypatch.setenv("MICAM_ALLOW_LOCAL_MODELS", "1")
    assert call(client, CAT, model=f"local-dir:{tmp_path}")[4]["model"]["num_classes"] == 4


# --- failures in flight leave nothing behind -----------------------------------------------------------
@pytest.mark.slow
def test_failed_requests_leave_no_hooks_state_or_locks(client, tmp_path):

    refused(client, CAT, layer="classifier")  # not a feature map: fails inside the forward hook
    refused(client, CAT, target="9999")
    refused(client, write(tmp_path, "x.png", b"junk"))
    loaded = work.CACHE.get("bundled:efficientnet_lite0", **_cache_kwargs())
    model = loaded.model
    assert sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules()) == 0
    assert not any(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert not work.CACHE._loading, "no load lock may stay behind"


def _cache_kwargs() -> dict:
    from micam_core import policy

    return policy.cache_kwargs()


@pytest.mark.parametrize("options,words", [({"steps": 100000}, "(steps) must be a whole number from 2 to 100"),
                                           ({"fill": "pink"}, "pink"),
                                           ({"threshold": 3.0}, "(threshold) must be a number from 0 to 1"),
                                           ({"layer": "no.such.layer"}, "no layer named")])
def test_bad_settings_are_refused(client, options, words):
    assert words in refused(client, CAT, **options)
