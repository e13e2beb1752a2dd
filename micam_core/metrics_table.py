"""The faithfulness metrics of one explanation as a table: the app's table and the command line's print.

Each column names the protocol metric it needs (:data:`micam_core.protocols.METRICS`; ``None``: every
protocol runs it); the app's table and the terminal's show the columns of the protocol that ran
(:func:`shown`). The report (JSON) keeps every field, a metric the protocol did not run as ``None``.
"Flips" follows :mod:`micam_core.verdict`: only when the target was top-1.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .verdict import percent

if TYPE_CHECKING:
    from .counterfactual import Faithfulness, MethodResult
    from .protocols import Protocol

NOT_RUN = "—"
# (header, short header for the terminal, cell of one map's result, the protocol metric it needs)
COLUMNS = (
    ("Method", "method", lambda r: r.label, None),
    ("Average Drop % (lower better)", "Avg Drop %", lambda r: round(r.average_drop, 2), None),
    ("Increase in Confidence", "Incr Conf", lambda r: "yes" if r.increase else "no", None),
    ("Paper's Drop % (lower better)", "paper Drop %", lambda r: round(r.paper_drop, 2), None),
    ("Paper's Increase % (higher better)", "paper Incr %", lambda r: round(r.paper_increase, 2), None),
    ("Deletion AUC (lower better)", "deletion AUC", lambda r: _number(r.curves.deletion_auc), "deletion"),
    ("Insertion AUC (higher better)", "insertion AUC", lambda r: _number(r.curves.insertion_auc), "insertion"),
    ("ROAD MoRF (lower better)", "ROAD MoRF", lambda r: _road(r, "morf_score"), "road"),
    ("ROAD LeRF (higher better)", "ROAD LeRF", lambda r: _road(r, "lerf_score"), "road"),
    ("ROAD combined (LeRF-MoRF)/2 (higher better)", "ROAD comb.", lambda r: _road(r, "combined"), "road"),
    ("Target loses top-1 when removed", "flips", lambda r: flip_cell(r.flipped), None),
    ("Target when removed (rank)", "target removed", lambda r: f"{percent(r.p_remove)} (rank {r.rank_remove})",
     None),
)
HEADERS = tuple(c[0] for c in COLUMNS)


def _number(x: float) -> Any:
    return NOT_RUN if math.isnan(x) else round(x, 4)


def _road(result: MethodResult, score: str) -> Any:
    return NOT_RUN if result.road is None else round(getattr(result.road, score), 4)


def flip_cell(flipped: bool | None) -> str:
    """yes / no, or why a flip is undefined (the target was not top-1)."""
    return "n/a: target not top-1" if flipped is None else ("yes" if flipped else "no")


def shown(protocol: Protocol | None = None) -> list[int]:
    """The indices of :data:`COLUMNS` that ``protocol`` fills (None: all of them)."""
    return [i for i, c in enumerate(COLUMNS) if protocol is None or c[3] is None or protocol.has(c[3])]


def headers(protocol: Protocol | None = None) -> list[str]:
    """The headers of the columns ``protocol`` fills."""
    return [COLUMNS[i][0] for i in shown(protocol)]


def row(result: MethodResult, protocol: Protocol | None = None) -> list[Any]:
    """One map's row (the columns of :func:`headers`)."""
    return [COLUMNS[i][2](result) for i in shown(protocol)]


def rows(faith: Faithfulness, protocol: Protocol | None = None) -> list[list[Any]]:
    """One row per map (the columns of :func:`headers`), methods first, then the baselines."""
    return [row(r, protocol) for r in faith.results.values()]


def text(faith: Faithfulness) -> str:
    """The table in plain text, columns aligned (a terminal's width: short headers), with its protocol: the
    columns of the metrics the protocol ran."""
    table = [[COLUMNS[i][1] for i in shown(faith.protocol)],
             *[[str(v) for v in row] for row in rows(faith, faith.protocol)]]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
             for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return f"Protocol: {faith.protocol.describe()}\n" + "\n".join(lines)
