"""Cascading model-parameter randomisation (Adebayo et al. 2018, arXiv:1810.03292): the models it explains.

The model is cut into *units*, top-down: the classifier head first, then the other modules after
the last block (e.g. EfficientNet's ``conv_head`` and ``bn2``), then each block or stage in reverse
order, then the stem. Step ``k`` re-initialises the top ``k`` units. The new values are those of
the same architecture freshly built by timm under ``torch.manual_seed(seed)`` (timm's own
initialisation, buffers such as BatchNorm statistics included); models timm cannot rebuild fall
back to each module's PyTorch ``reset_parameters`` under the same seed. The caller's model is never
modified: every randomised model is a copy.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from .capture import _LayerTap
from .errors import MicamError
from .models import LoadedModel, keep_companion, model_bytes

log = logging.getLogger(__name__)

_CONTAINERS = (nn.Sequential, nn.ModuleList)
_lock = threading.Lock()
# Both caches below are kept while the model lives (a rebuild and a deep copy per check would make a check about
# 4x one explanation instead of 2.5x, bench/sanity.py) and counted in the model cache's byte budget
# (models.keep_companion): a cache over its budget evicts the least recently used models with their copies.
# model -> seed -> re-initialised tensors (only those of units asked for so far), so repeated checks skip the rebuild
_fresh_cache: weakref.WeakKeyDictionary[nn.Module, dict[int, dict[str, torch.Tensor]]] = weakref.WeakKeyDictionary()
# model -> (lock, private copy) that the cascade randomises in place, reset to the model's weights on each use
_work_cache: weakref.WeakKeyDictionary[nn.Module, _Work] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Unit:
    """One randomisation step's modules (top-level names or ``container.child``)."""

    modules: tuple[str, ...]

    @property
    def name(self) -> str:
        return " + ".join(self.modules)

    def covers(self, layer: str) -> bool:
        """Whether ``layer`` lies inside this unit or contains part of it."""
        return any(_overlap(m, layer) for m in self.modules)


def _overlap(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".") or a == ""


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def units(model: nn.Module) -> list[Unit]:
    """The model's randomisation units, top-down (head first, then blocks in reverse, the stem last)."""
    children = [(n, c) for n, c in model.named_children() if _has_params(c)]
    containers = [i for i, (_, c) in enumerate(children)
                  if isinstance(c, _CONTAINERS) and sum(_has_params(g) for g in c.children()) >= 2]
    if not containers:
        return [Unit((n,)) for n, _ in reversed(children)] + _own_params(model, [])
    first, last = containers[0], containers[-1]
    body: list[Unit] = []
    for i in range(first, last + 1):
        name, child = children[i]
        if i in containers:
            body += [Unit((f"{name}.{n}",)) for n, g in child.named_children() if _has_params(g)]
        else:
            body.append(Unit((name,)))
    after = [n for n, _ in children[last + 1:]]
    head = _head_name(model, after)
    top = [Unit((head,))] if head else []
    neck = tuple(n for n in after if n != head)
    if neck:
        top.append(Unit(neck))
    stem = tuple(n for n, _ in children[:first])
    return top + body[::-1] + _own_params(model, list(stem))


def _own_params(model: nn.Module, stem: list[str]) -> list[Unit]:
    """The stem unit; parameters held by the model itself (ViT's cls_token, pos_embed) belong to it."""
    own = [n for n, _ in model.named_parameters(recurse=False)]
    return [Unit(tuple(stem + own))] if stem or own else []


def _head_name(model: nn.Module, after: list[str]) -> str | None:
    """The top-level child after the blocks that holds the classifier (timm's ``get_classifier``)."""
    get = getattr(model, "get_classifier", None)
    classifier = get() if callable(get) else None
    if isinstance(classifier, nn.Module):
        for name in after:
            child = model.get_submodule(name)
            if child is classifier or any(m is classifier for m in child.modules()):
                return name
    return after[-1] if after else None


def target_step(unit_list: list[Unit], layer: str) -> int:
    """The first step at which ``layer`` and everything above it are randomised (1-based)."""
    hits = [i + 1 for i, u in enumerate(unit_list) if u.covers(layer)]
    return max(hits) if hits else len(unit_list)


def _keys(model: nn.Module, unit_list: list[Unit]) -> list[list[str]]:
    """State-dict keys of each unit's parameters and buffers."""
    names = list(model.state_dict().keys())
    own = {n for n, _ in model.named_parameters(recurse=False)}
    return [[k for k in names if (k in u.modules and k in own) or any(k.startswith(p + ".") for p in u.modules)]
            for u in unit_list]


def _fresh_model(model: nn.Module, seed: int) -> nn.Module:
    """The same architecture re-initialised under ``seed``: timm's own build when possible."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = _timm_rebuild(model)
        if fresh is None:
            fresh = copy.deepcopy(model).cpu()
            for module in fresh.modules():
                if callable(getattr(module, "reset_parameters", None)):
                    module.reset_parameters()
    return fresh


def _timm_rebuild(model: nn.Module) -> nn.Module | None:
    import timm

    arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    if not arch:
        return None
    try:
        fresh = timm.create_model(arch, pretrained=False, num_classes=getattr(model, "num_classes", 1000))
    except Exception as err:  # an architecture timm no longer builds the same way: use the fallback
        log.info("timm could not rebuild %s (%s); using reset_parameters", arch, err)
        return None
    mine, theirs = model.state_dict(), fresh.state_dict()
    if mine.keys() != theirs.keys() or any(mine[k].shape != theirs[k].shape for k in mine):
        log.info("timm's fresh %s differs from the loaded model; using reset_parameters", arch)
        return None
    return fresh


def fresh_tensors(model: nn.Module, keys: list[str], seed: int) -> dict[str, torch.Tensor]:
    """Re-initialised values (on CPU) of the state-dict entries ``keys`` (built once per model and seed)."""
    with _lock:
        cached = _fresh_cache.setdefault(model, {}).setdefault(seed, {})
        if all(k in cached for k in keys):
            return {k: cached[k] for k in keys}
        state = _fresh_model(model, seed).state_dict()
        cached.update({k: state[k].detach().clone() for k in keys})
        kept = sum(t.numel() * t.element_size() for values in _fresh_cache[model].values() for t in values.values())
        keep_companion(model, "sanity-check fresh weights", kept)
        return {k: cached[k] for k in keys}


def _clean_copy(model: nn.Module) -> nn.Module:
    """A deep copy without the capture hooks another thread may have on the model right now."""
    dup = copy.deepcopy(model)
    for module in dup.modules():
        for hook_id in [i for i, h in module._forward_hooks.items() if isinstance(h, _LayerTap)]:
            del module._forward_hooks[hook_id]
    return dup.eval()


def _load(model: nn.Module, values: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    with torch.no_grad():
        for key, value in values.items():
            state[key].copy_(value.to(state[key].device, state[key].dtype))


@dataclass
class _Work:
    """A private copy of a model, and the state-dict keys a cascade changed in it."""

    model: nn.Module
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: set[str] = field(default_factory=set)


@contextmanager
def _work_copy(model: nn.Module, keys: list[str]) -> Iterator[nn.Module]:
    """A copy of ``model`` whose ``keys`` the caller may change: kept per model (a deep copy is slow).

    On the next use the entries the last cascade changed are copied back from ``model``.
    """
    with _lock:
        work = _work_cache.get(model)
        if work is None:
            work = _work_cache[model] = _Work(_clean_copy(model))
            keep_companion(model, "sanity-check copy", model_bytes(work.model))
    if not work.lock.acquire(blocking=False):  # another check is using it: this one gets its own copy
        yield _clean_copy(model)
        return
    try:
        if work.changed:
            state = model.state_dict()
            _load(work.model, {k: state[k] for k in work.changed})
        work.changed = set(keys)
        yield work.model
    finally:
        work.lock.release()


def cascade(loaded: LoadedModel, depth: int, seed: int = 0) -> Iterator[tuple[int, LoadedModel]]:
    """``(step, model)`` for steps 1..``depth``: one copy, randomised one more unit at each step.

    Each yielded model is the same object, changed in place for the next step: use it before advancing.
    """
    unit_list = units(loaded.model)
    depth = _checked_step(depth, unit_list)
    keys = _keys(loaded.model, unit_list[:depth])
    values = fresh_tensors(loaded.model, [k for unit in keys for k in unit], seed)
    with _work_copy(loaded.model, list(values)) as copy_:
        work = dataclasses.replace(loaded, model=copy_)
        for step, unit_keys in enumerate(keys, start=1):
            _load(work.model, {k: values[k] for k in unit_keys})
            yield step, work


def randomised_copy(loaded: LoadedModel, step: int, seed: int = 0) -> LoadedModel:
    """A new loaded model whose top ``step`` units (head first) are re-initialised; ``step=0`` is an equal copy."""
    unit_list = units(loaded.model)
    step = _checked_step(step, unit_list, allow_zero=True)
    work = dataclasses.replace(loaded, model=_clean_copy(loaded.model))
    keys = [k for unit in _keys(loaded.model, unit_list[:step]) for k in unit]
    _load(work.model, fresh_tensors(loaded.model, keys, seed))
    return work


def _checked_step(step: int, unit_list: list[Unit], allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if not isinstance(step, int) or not low <= step <= len(unit_list):
        raise MicamError(f"The randomisation step must be a whole number from {low} to {len(unit_list)} "
                         f"(this model has {len(unit_list)} units); got {step!r}.")
    return step
