"""The faithfulness metrics of one explanation as a table: the app's table and the command line's print.

One fixed set of columns whatever the protocol (the app's table, which API clients read); a metric the
protocol did not run shows ``—`` there. The terminal's table leaves those columns out.
"Flips" follows :mod:`micam_core.verdict`: only when the target was top-1.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .verdict import percent

if TYPE_CHECKING:
    from .counterfactual import Faithfulness, MethodResult

NOT_RUN = "—"
# (header, short header for the terminal, cell of one map's result)
COLUMNS = (
    ("Method", "method", lambda r: r.label),
    ("Average Drop % (lower better)", "Avg Drop %", lambda r: round(r.average_drop, 2)),
    ("Increase in Confidence", "Incr Conf", lambda r: "yes" if r.increase else "no"),
    ("Paper's Drop % (lower better)", "paper Drop %", lambda r: round(r.paper_drop, 2)),
    ("Paper's Increase % (higher better)", "paper Incr %", lambda r: round(r.paper_increase, 2)),
    ("Deletion AUC (lower better)", "deletion AUC", lambda r: _number(r.curves.deletion_auc)),
    ("Insertion AUC (higher better)", "insertion AUC", lambda r: _number(r.curves.insertion_auc)),
    ("ROAD MoRF (lower better)", "ROAD MoRF", lambda r: _road(r, "morf_score")),
    ("ROAD LeRF (higher better)", "ROAD LeRF", lambda r: _road(r, "lerf_score")),
    ("ROAD combined (LeRF-MoRF)/2 (higher better)", "ROAD comb.", lambda r: _road(r, "combined")),
    ("Target loses top-1 when removed", "flips", lambda r: flip_cell(r.flipped)),
    ("Target when removed (rank)", "target removed", lambda r: f"{percent(r.p_remove)} (rank {r.rank_remove})"),
)
HEADERS = tuple(c[0] for c in COLUMNS)


def _number(x: float) -> Any:
    return NOT_RUN if math.isnan(x) else round(x, 4)


def _road(result: MethodResult, score: str) -> Any:
    return NOT_RUN if result.road is None else round(getattr(result.road, score), 4)


def flip_cell(flipped: bool | None) -> str:
    """yes / no, or why a flip is undefined (the target was not top-1)."""
    return "n/a: target not top-1" if flipped is None else ("yes" if flipped else "no")


def row(result: MethodResult) -> list[Any]:
    """One map's row (see :data:`HEADERS`)."""
    return [cell(result) for _, _, cell in COLUMNS]


def rows(faith: Faithfulness) -> list[list[Any]]:
    """One row per map (see :data:`HEADERS`), methods first, then the baselines."""
    return [row(r) for r in faith.results.values()]


def text(faith: Faithfulness) -> str:
    """The table in plain text, columns aligned (a terminal's width: short headers), with its protocol.

    Columns of metrics the protocol did not run (``—`` in every row) are left out.
    """
    body = [[str(v) for v in row] for row in rows(faith)]
    shown = [i for i in range(len(COLUMNS)) if not body or any(row[i] != NOT_RUN for row in body)]
    table = [[COLUMNS[i][1] for i in shown], *[[row[i] for i in shown] for row in body]]
    widths = [max(len(row[i]) for row in table) for i in range(len(shown))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
             for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return f"Protocol: {faith.protocol.describe()}\n" + "\n".join(lines)
