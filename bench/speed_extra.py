"""Methods with extra passes, several layers or attention, against their oracles at the same batch size.

    python bench/speed_extra.py [--samples 1] [--repeats 1] [--methods ablationcam,sscam,...,legrad]

CPU, 224 px, random weights, one image, target class 0. Ablation-CAM, SS-CAM, IS-CAM, SmoothGrad-CAM++ and
RefineCAM on resnet18's layer3 (256 channels: 256+ masked passes each); LeGrad on torchvision's ViT-B/16
(its last four blocks). Both sides batch 32 inputs per pass (pytorch-grad-cam's and torchcam's default);
SS-CAM and IS-CAM run ``--samples`` samples (torchcam's defaults, 35 and 10, only multiply both sides).
Ours is timed from the image file and from the decoded crop (the shared pass included); the oracles from the
prepared tensor. Ours and the oracle run in turn, round after round (a warm-up round first), and the ratio is
the median of the per-round ratios: a busy machine slows both alike. RefineCAM and LeGrad spend no extra
pass: the shared pass records their layers and attention.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import timm  # noqa: E402
import torch  # noqa: E402

from bench.speed import interleaved, print_table, ratio  # noqa: E402
from micam_core import METHOD_LABELS, explain, from_module, load_image  # noqa: E402
from micam_core.legrad import legrad_blocks  # noqa: E402
from micam_core.methods import explain_crops  # noqa: E402
from micam_core.refine import refine_layers  # noqa: E402

LAYER = "layer3"
BATCH = 32


def cnn_oracles(loaded, x, samples: int) -> dict:
    """method -> (our params, the oracle's call) on resnet18's layer3."""
    import torchcam.methods as tc
    from pytorch_grad_cam import AblationCAM, RefineCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, module = loaded.model, loaded.model.get_submodule(LAYER)
    target = [ClassifierOutputTarget(0)]
    ablation = AblationCAM(model, [module], batch_size=BATCH)
    refine = RefineCAM(model, [model.get_submodule(n) for n in reversed(refine_layers(loaded, LAYER, 3))])

    def torchcam_call(cls, **kwargs):
        extractor = cls(model, LAYER, batch_size=BATCH, **kwargs)

        def run():
            with torch.no_grad():
                return extractor(0, model(x))
        return run

    def smooth():
        with tc.SmoothGradCAMpp(model, LAYER) as extractor:
            model(x)
            return extractor(0)

    return {
        "ablationcam": ({}, "pytorch-grad-cam AblationCAM", lambda: ablation(input_tensor=x, targets=target)),
        "sscam": ({"samples": samples}, "torchcam SSCAM", torchcam_call(tc.SSCAM, num_samples=samples)),
        "iscam": ({"samples": samples}, "torchcam ISCAM", torchcam_call(tc.ISCAM, num_samples=samples)),
        "smoothgradcampp": ({}, "torchcam SmoothGradCAMpp", smooth),
        "refinecam": ({}, "pytorch-grad-cam RefineCAM", lambda: refine(x, target)),
    }


def paired(label: str, oracle: str, ours, crop_in, theirs, repeats: int):
    """Ours from the image file, ours from the decoded crop, and the oracle from the tensor, in turn."""
    times, _ = interleaved({"ours": ours, "crop": crop_in, "theirs": theirs}, repeats)
    yield f"{label}: ours, image in", statistics.median(times["ours"]), None
    yield f"{label}: ours, crop in", statistics.median(times["crop"]), None
    yield (f"{label}: {oracle} (tensor in)", statistics.median(times["theirs"]),
           f"ours {ratio(times['theirs'], times['crop']):.2f}x faster crop in, "
           f"{ratio(times['theirs'], times['ours']):.2f}x image in")


def rows(image: Path, samples: int, repeats: int, methods: tuple[str, ...]):
    torch.manual_seed(0)
    loaded = from_module(timm.create_model("resnet18", pretrained=False), spec="resnet18", device="cpu")
    crop = loaded.crop(load_image(image))
    x = loaded.to_input([crop]).contiguous()
    for method, (params, oracle, call) in cnn_oracles(loaded, x, samples).items():
        if method not in methods:
            continue
        ours = lambda m=method, p=params: explain(loaded, image, target=0, layer=LAYER, methods=(m,),  # noqa: E731
                                                  params={m: p})
        crop_in = lambda m=method, p=params: explain_crops(loaded, [crop], lambda _: [0], LAYER, (m,),  # noqa: E731
                                                           params={m: p})
        yield from paired(f"{METHOD_LABELS[method]} (resnet18 {LAYER})", oracle, ours, crop_in, call, repeats)
    if "legrad" in methods:
        yield from legrad_rows(image, repeats)


def legrad_rows(image: Path, repeats: int):
    import torchcam.methods as tc
    import torchvision

    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16(weights=None)
    loaded = from_module(vit, spec="vit_b_16", device="cpu")
    x = loaded.to_input([loaded.crop(load_image(image))]).contiguous()
    layer = "encoder.layers.encoder_layer_8"

    def theirs():  # its hooks only while it runs (they refuse the no-grad passes of ours)
        with tc.LeGrad(vit, legrad_blocks(vit, layer),
                       score_projection=lambda t: vit.heads(vit.encoder.ln(t)[:, 0])) as extractor:
            vit(x)
            return extractor(0)

    ours = lambda: explain(loaded, image, target=0, layer=layer, methods=("legrad",))  # noqa: E731
    crop = loaded.crop(load_image(image))
    crop_in = lambda: explain_crops(loaded, [crop], lambda _: [0], layer, ("legrad",))  # noqa: E731
    yield from paired("LeGrad (torchvision ViT-B/16, last 4 blocks)", "torchcam LeGrad", ours, crop_in, theirs,
                      repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "chelsea_cat.jpg")
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--methods", default="ablationcam,sscam,iscam,smoothgradcampp,refinecam,legrad")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="as bench/speed.py's")
    args = parser.parse_args()
    if args.clock == "cpu":
        import time

        import bench.speed

        bench.speed.CLOCK = time.process_time
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, image {args.image.name}, "
          f"batch {BATCH}, SS-CAM/IS-CAM samples {args.samples}, {args.clock} clock")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        print_table("extra-pass, multi-layer and attention methods vs their oracles",
                    ((label, t, note or "") for label, t, note in rows(args.image, args.samples, args.repeats,
                                                                        tuple(args.methods.split(",")))))


if __name__ == "__main__":
    main()
