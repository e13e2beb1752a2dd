"""The faithfulness metrics of one explanation as a table: the app's table and the command line's print.

Each column names the protocol metric it needs (:data:`micam_core.protocols.METRICS`; ``None``: every
protocol runs it); the app's table and the terminal's show the columns of the protocol that ran
(:func:`shown`), as the JSON report holds only what the protocol ran (``MethodResult.to_report``).
"Flips" follows :mod:`micam_core.verdict`: only when the target was top-1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from .verdict import percent

if TYPE_CHECKING:
    from .counterfactual import Faithfulness, MethodResult
    from .protocols import Protocol

NOT_RUN = "—"


class Column(NamedTuple):
    """One column of the table."""

    header: str
    short: str  # the terminal's header
    cell: Callable[[MethodResult], Any]  # one map's value
    needs: str | None = None  # the protocol metric it needs (None: every protocol runs it)


COLUMNS = (
    Column("Method", "method", lambda r: r.label),
    Column("Average Drop % (lower better)", "Avg Drop %", lambda r: round(r.average_drop, 2)),
    Column("Increase in Confidence", "Incr Conf", lambda r: "yes" if r.increase else "no"),
    Column("Paper's Drop % (lower better)", "paper Drop %", lambda r: round(r.paper_drop, 2)),
    Column("Paper's Increase % (higher better)", "paper Incr %", lambda r: round(r.paper_increase, 2)),
    Column("Deletion AUC (lower better)", "deletion AUC", lambda r: _number(r.curves.deletion_auc), "deletion"),
    Column("Insertion AUC (higher better)", "insertion AUC", lambda r: _number(r.curves.insertion_auc), "insertion"),
    Column("ROAD MoRF (lower better)", "ROAD MoRF", lambda r: _road(r, "morf_score"), "road"),
    Column("ROAD LeRF (higher better)", "ROAD LeRF", lambda r: _road(r, "lerf_score"), "road"),
    Column("ROAD combined (LeRF-MoRF)/2 (higher better)", "ROAD comb.", lambda r: _road(r, "combined"), "road"),
    Column("Target loses top-1 when removed", "flips", lambda r: flip_cell(r.flipped)),
    Column("Target when removed (rank)", "target removed", lambda r: f"{percent(r.p_remove)} (rank {r.rank_remove})"),
)
HEADERS = tuple(c.header for c in COLUMNS)


def _number(x: float) -> Any:
    return NOT_RUN if math.isnan(x) else round(x, 4)


def _road(result: MethodResult, score: str) -> Any:
    return NOT_RUN if result.road is None else round(getattr(result.road, score), 4)


def flip_cell(flipped: bool | None) -> str:
    """yes / no, or why a flip is undefined (the target was not top-1)."""
    return "n/a: target not top-1" if flipped is None else ("yes" if flipped else "no")


def shown(protocol: Protocol | None = None) -> list[Column]:
    """The columns ``protocol`` fills (None: all of them)."""
    return [c for c in COLUMNS if protocol is None or c.needs is None or protocol.has(c.needs)]


def headers(protocol: Protocol | None = None) -> list[str]:
    """The headers of the columns ``protocol`` fills."""
    return [c.header for c in shown(protocol)]


def row(result: MethodResult, protocol: Protocol | None = None) -> list[Any]:
    """One map's row (the columns of :func:`headers`)."""
    return [c.cell(result) for c in shown(protocol)]


def rows(faith: Faithfulness, protocol: Protocol | None = None) -> list[list[Any]]:
    """One row per map (the columns of :func:`headers`), methods first, then the baselines."""
    return [row(r, protocol) for r in faith.results.values()]


def text(faith: Faithfulness) -> str:
    """The table in plain text, columns aligned (a terminal's width: short headers), with its protocol: the
    columns of the metrics the protocol ran."""
    table = [[c.short for c in shown(faith.protocol)],
             *[[str(v) for v in row] for row in rows(faith, faith.protocol)]]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
             for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return f"Protocol: {faith.protocol.describe()}\n" + "\n".join(lines)
