"""The faithfulness metrics of one explanation as a table: the app's table and the command line's print."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .counterfactual import Faithfulness

HEADERS = (
    "Method", "Average Drop % (lower better)", "Increase in Confidence", "Paper's Drop % (lower better)",
    "Paper's Increase % (higher better)", "Deletion AUC (lower better)", "Insertion AUC (higher better)",
    "Prediction flips when removed",
)


def rows(faith: Faithfulness) -> list[list[Any]]:
    """One row per map (see :data:`HEADERS`), methods first, then the baselines."""
    return [[r.label, round(r.average_drop, 2), "yes" if r.increase else "no", round(r.paper_drop, 2),
             round(r.paper_increase, 2), round(r.curves.deletion_auc, 4), round(r.curves.insertion_auc, 4),
             "yes" if r.flipped else "no"] for r in faith.results.values()]


def text(faith: Faithfulness) -> str:
    """The table in plain text, columns aligned (a terminal's width: short headers)."""
    short = ("method", "Avg Drop %", "Incr Conf", "paper Drop %", "paper Incr %", "deletion AUC",
             "insertion AUC", "flips")
    table = [list(short), *[[str(v) for v in row] for row in rows(faith)]]
    widths = [max(len(row[i]) for row in table) for i in range(len(short))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
             for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
