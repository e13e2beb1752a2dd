"""Named evaluation protocols: each is one record of fill, insertion start, steps, threshold and metrics.

Every report, table and figure names the protocol that produced its numbers (:meth:`Protocol.describe`).
The random and centred baselines run under every protocol.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from .errors import MicamError, shorten

REMOVED = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # ROAD's removed fractions (percentiles 90..10)
NOISE = 0.01  # ROAD's imputation noise, [0, 1] pixel units

# What a protocol can measure: keep/remove counterfactuals (with Drop/Increase) always run.
METRICS = ("deletion", "insertion", "road")
# The settings a protocol brings (its fields of the same names): choosing it sets them, unless they are given too.
PROTOCOL_SETTINGS = ("threshold", "fill", "steps")


@dataclass(frozen=True)
class Protocol:
    """How maps are scored: the counterfactual region and fill, the curves, and which metrics."""

    name: str
    label: str
    fill: str = "black"  # what removed pixels become (keep/remove and deletion)
    insertion_start: str = "blur"  # insertion starts from the blurred image (Petsiuk et al.)
    steps: int = 32  # deletion/insertion steps
    threshold: float = 0.5  # region = map >= threshold
    metrics: tuple[str, ...] = ("deletion", "insertion")
    removed: tuple[float, ...] = REMOVED  # ROAD's removed fractions
    noise: float = NOISE  # ROAD's imputation noise ([0, 1] pixel units)
    reference: str = ""

    def has(self, metric: str) -> bool:
        return metric in self.metrics

    def with_settings(self, threshold: float | None = None, fill: str | None = None,
                      steps: int | None = None) -> Protocol:
        """The protocol with some settings changed (``None`` keeps the protocol's own)."""
        given = {"threshold": threshold, "fill": fill, "steps": steps}
        changes = {k: v for k, v in given.items() if v is not None}
        return replace(self, **changes)

    def describe(self) -> str:
        """E.g. ``rise (deletion to black and insertion from blur, 32 steps; region map >= 0.5)``,
        naming any setting that differs from the named protocol's own."""
        base = PROTOCOLS.get(self.name)
        parts = []
        if self.has("deletion") or self.has("insertion"):
            kinds = [f"deletion to {self.fill}" if self.has("deletion") else "",
                     f"insertion from {self.insertion_start}" if self.has("insertion") else ""]
            parts.append(f"{' and '.join(k for k in kinds if k)}, {self.steps} steps")
        if self.has("road"):
            parts.append(f"ROAD MoRF/LeRF at {len(self.removed)} fractions, noise {self.noise:g}")
        parts.append(f"region map >= {self.threshold:g}, filled {self.fill}")
        changed = [] if base is None else [k for k in PROTOCOL_SETTINGS if getattr(base, k) != getattr(self, k)]
        suffix = f", changed: {', '.join(changed)}" if changed else ""
        return f"{self.name} ({'; '.join(parts)}{suffix})"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "metrics": list(self.metrics), "removed": list(self.removed),
                "description": self.describe()}


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("rise", "RISE: deletion to black, insertion from blur", metrics=("deletion", "insertion"),
             reference="Petsiuk et al., BMVC 2018 (RISE)"),
    Protocol("paper", "MI CAM paper: threshold 0.5, black fill, 100-step deletion, their Drop/Increase",
             steps=100, metrics=("deletion",), reference="the MI CAM authors (arXiv 2507.09092)"),
    Protocol("road", "ROAD: noisy linear imputation, MoRF and LeRF", metrics=("road",),
             reference="Rong et al., ICML 2022 (ROAD)"),
)}
DEFAULT_PROTOCOL = "rise"


def supplied_defaults(name: str) -> str:
    """What each protocol brings for setting ``name`` (of :data:`PROTOCOL_SETTINGS`), e.g. ``rise 32, paper 100``."""
    return ", ".join(f"{p.name} {getattr(p, name)}" for p in PROTOCOLS.values())


def get_protocol(value: str | Protocol | None) -> Protocol:
    """The protocol record for a name (``None``: the default); a clear error for unknown names."""
    if isinstance(value, Protocol):
        return value
    name = (value or DEFAULT_PROTOCOL).strip().lower()
    if name not in PROTOCOLS:
        raise MicamError(f"Unknown protocol '{shorten(str(value))}'; choose from {', '.join(PROTOCOLS)}.")
    return PROTOCOLS[name]
