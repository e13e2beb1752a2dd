"""Statistics of an evaluate run: a verdict block, means with intervals, paired comparisons, Markdown/CSV/PNG.

Per model and method: the mean of each metric (see :mod:`.metrics`) with a 95% interval (percentile
bootstrap over images, seeded; Wilson for yes/no metrics), and top-1 accuracy where labels name the
model's classes. Paired, per model: the reference method (MI CAM) against every other method and both
baselines on the same images: mean of (reference - other) with its bootstrap CI, the win rate (share
of images where the reference is better, ties count half) and the Wilcoxon signed-rank p-value
(two-sided; zero differences dropped), Holm-adjusted over the comparisons of each metric. The summary
opens with one sentence per metric and comparison (:mod:`.verdicts`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import MicamError
from ..escape import PLAIN_TEXT_RC, write_csv
from .metrics import Metric, bootstrap_ci, derive, holm, label_of, present, values, wilcoxon_p, wilson
from .store import ResultStore
from .verdicts import ALPHA, answer_lines, verdict_lines

log = logging.getLogger(__name__)


@dataclass
class Summary:
    markdown: str
    per_method: pd.DataFrame
    paired: pd.DataFrame
    accuracy: pd.DataFrame
    files: list[Path] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)
    answers: dict[str, list[str]] = field(default_factory=dict)  # is the reference more faithful? per metric kind


def p_note(diff: np.ndarray) -> str:
    """Why the Wilcoxon p-value is undefined ('' when it is defined)."""
    if len(diff) == 0:
        return "no image has both maps"
    if np.count_nonzero(diff) == 0:
        return f"all {len(diff)} differences are zero"
    return ""


def load_rows(results: str | Path) -> pd.DataFrame:
    return ResultStore(results).read().to_pandas()


def summarize(results: str | Path, reference: str = "micam", resamples: int = 2000, plots: bool = True) -> Summary:
    """Write summary.md, summary.csv, paired.csv and the plots into ``results``; return them."""
    results = Path(results)
    rows = load_rows(results)
    ok = derive(rows[rows["status"] == "ok"])
    metrics = present(ok)
    per_method = _per_method(ok, metrics, resamples)
    paired = _paired(ok, metrics, reference, resamples)
    accuracy = _accuracy(ok, resamples)
    failed = rows[rows["status"] != "ok"].drop_duplicates(["model", "image_id"])
    config = ResultStore(results).read_config() or {}
    verdicts = verdict_lines(ok, paired, reference, resamples)
    answers = answer_lines(paired, reference)
    md = _markdown(results, config, per_method, paired, accuracy, failed, reference, metrics, verdicts, answers)
    files = [results / "summary.md", results / "summary.csv", results / "paired.csv"]
    files[0].write_text(md)
    write_csv(per_method, files[1])  # text cells starting with = + - @ prefixed: inert in spreadsheets
    write_csv(paired, files[2])
    if plots and not ok.empty:
        import matplotlib.pyplot as plt

        from .summary_plots import plots as draw

        with plt.rc_context(PLAIN_TEXT_RC):  # "$" in a model or method name is a dollar sign
            files += draw(ok, metrics, results, _protocol_text(config))
    return Summary(md, per_method, paired, accuracy, files, verdicts, answers)


def _interval(x: np.ndarray, metric: Metric, resamples: int) -> tuple[float, float]:
    if metric.binary:
        lo, hi = wilson(float(np.sum(x > 0)), len(x))
        return lo * metric.scale, hi * metric.scale
    return bootstrap_ci(x, resamples)


def _per_method(ok: pd.DataFrame, metrics: list[Metric], resamples: int) -> pd.DataFrame:
    out = []
    for (model, method), group in ok.groupby(["model", "method"], sort=False):
        for metric in metrics:
            x = values(group, metric)
            lo, hi = _interval(x, metric, resamples)
            out.append({"model": model, "method": method, "metric": metric.column, "label": metric.label,
                        "n": len(x), "mean": float(x.mean()) if len(x) else float("nan"), "ci_low": lo,
                        "ci_high": hi, "better": {1: "higher", -1: "lower", 0: ""}[metric.better],
                        "interval": "Wilson" if metric.binary else "bootstrap"})
    return pd.DataFrame(out)


def _paired(ok: pd.DataFrame, metrics: list[Metric], reference: str, resamples: int) -> pd.DataFrame:
    out = []
    for model, group in ok.groupby("model", sort=False):
        ref = group[group["method"] == reference].set_index("image_id")
        if ref.empty:
            continue
        others = [m for m in group["method"].unique() if m != reference]
        for metric in [m for m in metrics if m.better]:
            family = []
            for other in others:
                oth = group[group["method"] == other].set_index("image_id")
                common = ref.index.intersection(oth.index)
                a = pd.to_numeric(ref.loc[common, metric.column].astype("object"), errors="coerce")
                b = pd.to_numeric(oth.loc[common, metric.column].astype("object"), errors="coerce")
                keep = a.notna() & b.notna()
                a, b = a[keep].to_numpy(float) * metric.scale, b[keep].to_numpy(float) * metric.scale
                d = a - b
                lo, hi = bootstrap_ci(d, resamples)
                better = np.sign(d) * metric.better
                wins = float(np.mean((better > 0) + 0.5 * (d == 0))) if len(d) else float("nan")
                family.append({"model": model, "reference": reference, "other": other, "metric": metric.column,
                               "label": metric.label, "n": len(d), "reference_mean": _mean(a),
                               "other_mean": _mean(b), "mean_diff": _mean(d), "ci_low": lo, "ci_high": hi,
                               "win_rate": wins, "wins": int((better > 0).sum()), "losses": int((better < 0).sum()),
                               "ties": int((d == 0).sum()), "wilcoxon_p": wilcoxon_p(d), "p_note": p_note(d)})
            adjusted = holm([r["wilcoxon_p"] for r in family])
            tested = sum(1 for r in family if not np.isnan(r["wilcoxon_p"]))
            for r, p in zip(family, adjusted):
                out.append({**r, "p_holm": p, "family": tested})
    return pd.DataFrame(out)


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else float("nan")


def _accuracy(ok: pd.DataFrame, resamples: int) -> pd.DataFrame:
    out = []
    for model, group in ok.groupby("model", sort=False):
        images = group.drop_duplicates("image_id")
        labelled = images[images["top1_correct"].notna()]
        x = labelled["top1_correct"].astype(float).to_numpy() * 100.0
        lo, hi = bootstrap_ci(x, resamples)
        out.append({"model": model, "images": len(images), "labelled": len(x),
                    "top1_pct": float(x.mean()) if len(x) else float("nan"), "ci_low": lo, "ci_high": hi,
                    "seconds_per_image": float(images["seconds"].mean()),
                    "target_from_label": int((images["target_source"] == "label").sum())})
    return pd.DataFrame(out)


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]  # str.capitalize would lower "ROAD MoRF/LeRF"


def _fmt(mean: float, lo: float, hi: float, digits: int = 3) -> str:
    if np.isnan(mean):
        return "—"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _protocol_text(config: dict) -> str:
    """E.g. ``protocol rise (deletion to black and insertion from blur, 32 steps; region map >= 0.5, filled
    black); sanity checks (seed 0)``. run.json leaves out the default protocol, so a run without one is the default."""
    from ..protocols import get_protocol
    from ..settings import DEFAULTS

    s = config.get("settings", {})
    try:
        protocol = get_protocol(s.get("protocol") or DEFAULTS["protocol"])
    except MicamError:  # a protocol this version does not know: name it as recorded
        return f"protocol {s.get('protocol')}: threshold {s.get('threshold')}, fill {s.get('fill')}, " \
               f"{s.get('steps')} steps" + _sanity_text(s)
    known = {k: s[k] for k in ("threshold", "fill", "steps") if s.get(k) is not None}
    return f"protocol {protocol.with_settings(**known).describe()}" + _sanity_text(s)


def _sanity_text(settings: dict) -> str:
    return "; sanity checks (seed 0)" if settings.get("sanity") else ""


def _target_text(config: dict, accuracy: pd.DataFrame) -> str:
    """"target: top-1" unless labels named the target of some images."""
    from_label = int(accuracy["target_from_label"].sum()) if not accuracy.empty else 0
    images = int(accuracy["images"].sum()) if not accuracy.empty else 0
    if from_label == 0:
        wanted = config.get("settings", {}).get("target") == "label"
        return "target: top-1" + (" (no label names a class of the model)" if wanted and images else "")
    if from_label == images:
        return "target: each image's label"
    return f"target: the image's label ({from_label} of {images} images), else top-1"


def _markdown(results: Path, config: dict, per_method, paired, accuracy, failed, reference: str,
              metrics: list[Metric], verdicts: list[str], answers: dict[str, list[str]]) -> str:
    lines = [f"# Faithfulness summary: {results.name}", "",
             f"{_upper_first(_protocol_text(config))}; {_target_text(config, accuracy)}. "
             f"Means with 95% intervals over images (bootstrap; Wilson for proportions). "
             f"Failed images: {len(failed)}.", "", "## Verdict", ""]
    if answers:
        lines += [f"**Is {label_of(reference)} more faithful?** Counting only metrics where the paired test "
                  f"decides (Holm-adjusted p < {ALPHA}).", ""]
        for heading, sentences in answers.items():
            lines += [f"{heading}:", ""] + [f"- {a}" for a in sentences] + [""]
        lines += ["Per metric:", ""]
    lines += [f"- {v}" for v in verdicts] or ["- No paired comparison: the reference method has no rows."]
    lines += ["", f"Verdicts: paired Wilcoxon signed-rank tests of {label_of(reference)} against every other map "
              f"on the same images, Holm-adjusted per metric; 'not distinguishable' means p >= {ALPHA} after "
              "adjustment.", ""]
    for _, acc in accuracy.iterrows():
        lines += _model_tables(acc, per_method, paired, metrics, reference)
    return "\n".join(lines)


def _model_tables(acc, per_method, paired, metrics: list[Metric], reference: str) -> list[str]:
    model = acc["model"]
    lines = [f"## {model}", "", f"{acc['images']} images, {acc['seconds_per_image']:.2f} s per image; "
             + (f"top-1 accuracy {_fmt(acc['top1_pct'], acc['ci_low'], acc['ci_high'], 1)} % on "
                f"{acc['labelled']} labelled images." if acc["labelled"] else "no labels naming its classes."), ""]
    table = per_method[per_method["model"] == model]
    pairs = paired[paired["model"] == model] if not paired.empty else paired
    for group in dict.fromkeys(m.group for m in metrics):
        shown = [m for m in metrics if m.group == group and m.column in set(table["metric"])]
        if shown:
            lines += [f"### {group.capitalize()}", ""] + _means_table(table, shown)
            lines += _paired_table(pairs, shown, reference)
    return lines


def _means_table(table: pd.DataFrame, shown: list[Metric]) -> list[str]:
    arrows = {1: " (↑)", -1: " (↓)", 0: ""}
    lines = ["| method | " + " | ".join(m.label + arrows[m.better] for m in shown) + " |",
             "|---" * (len(shown) + 1) + "|"]
    for method in table["method"].unique():
        cells = table[table["method"] == method].set_index("metric")
        lines.append(f"| {label_of(method)} | " + " | ".join(
            _fmt(cells.loc[m.column, "mean"], cells.loc[m.column, "ci_low"], cells.loc[m.column, "ci_high"],
                 m.digits) for m in shown) + " |")
    return lines + [""]


def _paired_table(pairs: pd.DataFrame, shown: list[Metric], reference: str) -> list[str]:
    directed = [m for m in shown if m.better and not pairs.empty and m.column in set(pairs["metric"])]
    if not directed:
        return []
    lines = [f"Paired, {label_of(reference)} minus each other map on the same images "
             "(difference [95% CI]; win = share of images where it is better, ties half; "
             "Wilcoxon signed-rank p, Holm-adjusted per metric):", "",
             "| vs | " + " | ".join(m.label for m in directed) + " |", "|---" * (1 + len(directed)) + "|"]
    for other in pairs["other"].unique():
        cells = pairs[pairs["other"] == other].set_index("metric")
        lines.append(f"| {label_of(other)} | " + " | ".join(_pair_cell(cells.loc[m.column], m)
                                                          for m in directed) + " |")
    return lines + [""]


def _pair_cell(r, metric: Metric) -> str:
    p = f"p {r['p_holm']:.2g}" if not np.isnan(r["p_holm"]) else f"p undefined ({r['p_note']})"
    return (f"{_fmt(r['mean_diff'], r['ci_low'], r['ci_high'], metric.digits)}; "
            f"win {100 * r['win_rate']:.0f}%; {p}")


