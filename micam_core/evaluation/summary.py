"""Statistics of an evaluate run: means with bootstrap CIs, paired comparisons, Markdown/CSV/PNG.

Per model and method: the mean of each metric with a 95% percentile-bootstrap interval (images
resampled, seeded), and top-1 accuracy where labels name the model's classes. Paired, per model:
the reference method (MI CAM) against every other method and both baselines on the same images:
mean of (reference - other) with its bootstrap CI, the win rate (share of images where the reference
is better, ties count half) and the Wilcoxon signed-rank p-value (two-sided; zero differences dropped).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .store import ResultStore

log = logging.getLogger(__name__)

# column, label, which way is better (+1 higher, -1 lower, 0 neither), scale for display
METRICS = (
    ("deletion_auc", "deletion AUC", -1, 1.0),
    ("insertion_auc", "insertion AUC", +1, 1.0),
    ("average_drop", "Average Drop %", -1, 1.0),
    ("increase", "Increase in Confidence %", +1, 100.0),
    ("paper_drop", "paper's Drop %", -1, 1.0),
    ("paper_increase", "paper's Increase %", +1, 1.0),
    ("flipped", "flips when removed %", +1, 100.0),
    ("region_fraction", "region fraction", 0, 1.0),
)
SEED = 0


@dataclass
class Summary:
    markdown: str
    per_method: pd.DataFrame
    paired: pd.DataFrame
    accuracy: pd.DataFrame
    files: list[Path] = field(default_factory=list)


def bootstrap_ci(values: np.ndarray, resamples: int = 2000, seed: int = SEED,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (NaN when there are no values)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 256):  # bounded memory for large data sets
        stop = min(resamples, start + 256)
        means[start:stop] = values[rng.integers(0, values.size, (stop - start, values.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def wilcoxon_p(diff: np.ndarray) -> float:
    from scipy.stats import wilcoxon

    diff = np.asarray(diff, dtype=np.float64)
    if np.count_nonzero(diff) == 0:
        return float("nan")
    return float(wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)


def label_of(name: str) -> str:
    import micam_core
    from micam_core.counterfactual import BASELINES

    return micam_core.METHOD_LABELS.get(name) or BASELINES.get(name, name)


def load_rows(results: str | Path) -> pd.DataFrame:
    return ResultStore(results).read().to_pandas()


def summarize(results: str | Path, reference: str = "micam", resamples: int = 2000, plots: bool = True) -> Summary:
    """Write summary.md, summary.csv, paired.csv and the plots into ``results``; return them."""
    results = Path(results)
    rows = load_rows(results)
    ok = rows[rows["status"] == "ok"]
    per_method = _per_method(ok, resamples)
    paired = _paired(ok, reference, resamples)
    accuracy = _accuracy(ok, resamples)
    failed = rows[rows["status"] != "ok"].drop_duplicates(["model", "image_id"])
    md = _markdown(results, per_method, paired, accuracy, ok, failed, reference)
    files = [results / "summary.md", results / "summary.csv", results / "paired.csv"]
    files[0].write_text(md)
    per_method.to_csv(files[1], index=False)
    paired.to_csv(files[2], index=False)
    if plots and not ok.empty:
        files += _plots(ok, results)
    return Summary(md, per_method, paired, accuracy, files)


def _per_method(ok: pd.DataFrame, resamples: int) -> pd.DataFrame:
    out = []
    for (model, method), group in ok.groupby(["model", "method"], sort=False):
        for col, label, better, scale in METRICS:
            x = group[col].astype(float).to_numpy() * scale
            lo, hi = bootstrap_ci(x, resamples)
            out.append({"model": model, "method": method, "metric": col, "label": label, "n": len(x),
                        "mean": float(x.mean()) if len(x) else float("nan"), "ci_low": lo, "ci_high": hi,
                        "better": {1: "higher", -1: "lower", 0: ""}[better]})
    return pd.DataFrame(out)


def _paired(ok: pd.DataFrame, reference: str, resamples: int) -> pd.DataFrame:
    out = []
    for model, group in ok.groupby("model", sort=False):
        ref = group[group["method"] == reference].set_index("image_id")
        if ref.empty:
            continue
        for other in [m for m in group["method"].unique() if m != reference]:
            oth = group[group["method"] == other].set_index("image_id")
            common = ref.index.intersection(oth.index)
            for col, label, better, scale in METRICS:
                if better == 0:
                    continue
                d = (ref.loc[common, col].astype(float) - oth.loc[common, col].astype(float)).to_numpy() * scale
                lo, hi = bootstrap_ci(d, resamples)
                wins = np.mean((np.sign(d) * better > 0) + 0.5 * (d == 0)) if len(d) else float("nan")
                out.append({"model": model, "reference": reference, "other": other, "metric": col, "label": label,
                            "n": len(d), "mean_diff": float(d.mean()) if len(d) else float("nan"),
                            "ci_low": lo, "ci_high": hi, "win_rate": float(wins), "wilcoxon_p": wilcoxon_p(d)})
    return pd.DataFrame(out)


def _accuracy(ok: pd.DataFrame, resamples: int) -> pd.DataFrame:
    out = []
    for model, group in ok.groupby("model", sort=False):
        images = group.drop_duplicates("image_id")
        labelled = images[images["top1_correct"].notna()]
        x = labelled["top1_correct"].astype(float).to_numpy() * 100.0
        lo, hi = bootstrap_ci(x, resamples)
        out.append({"model": model, "images": len(images), "labelled": len(x),
                    "top1_pct": float(x.mean()) if len(x) else float("nan"), "ci_low": lo, "ci_high": hi,
                    "seconds_per_image": float(images["seconds"].mean())})
    return pd.DataFrame(out)


def _fmt(mean: float, lo: float, hi: float, digits: int = 3) -> str:
    if np.isnan(mean):
        return "—"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _markdown(results: Path, per_method, paired, accuracy, ok, failed, reference: str) -> str:
    config = ResultStore(results).read_config() or {}
    s = config.get("settings", {})
    lines = [f"# Faithfulness summary: {results.name}", "",
             f"Protocol: {s.get('protocol', 'rise')}. Settings: threshold {s.get('threshold')}, "
             f"fill {s.get('fill')}, steps {s.get('steps')}, "
             f"target {s.get('target')}. Means with 95% bootstrap CIs over images. "
             f"Failed images: {len(failed)}.", ""]
    for _, acc in accuracy.iterrows():
        model = acc["model"]
        lines += [f"## {model}", "", f"{acc['images']} images, {acc['seconds_per_image']:.2f} s per image; "
                  + (f"top-1 accuracy {_fmt(acc['top1_pct'], acc['ci_low'], acc['ci_high'], 1)} % on "
                     f"{acc['labelled']} labelled images." if acc["labelled"] else "no labels naming its classes."), ""]
        table = per_method[per_method["model"] == model]
        metrics = [m for m in METRICS if m[0] in set(table["metric"])]
        lines.append("| method | " + " | ".join(f"{lab} ({'↑' if b > 0 else '↓' if b < 0 else ''})".replace(" ()", "")
                                                for _, lab, b, _ in metrics) + " |")
        lines.append("|---" * (len(metrics) + 1) + "|")
        for method in table["method"].unique():
            cells = table[table["method"] == method].set_index("metric")
            digits = {"deletion_auc": 3, "insertion_auc": 3, "region_fraction": 3}
            lines.append(f"| {label_of(method)} | " + " | ".join(
                _fmt(cells.loc[c, "mean"], cells.loc[c, "ci_low"], cells.loc[c, "ci_high"], digits.get(c, 1))
                for c, *_ in metrics) + " |")
        pairs = paired[paired["model"] == model] if not paired.empty else paired
        if not pairs.empty:
            lines += ["", f"Paired, {label_of(reference)} minus each other map on the same images "
                      "(difference [95% CI]; win rate = share of images where it is better, ties half; "
                      "Wilcoxon signed-rank p):", "",
                      "| vs | " + " | ".join(lab for c, lab, b, _ in METRICS if b) + " |",
                      "|---" * (1 + sum(1 for m in METRICS if m[2])) + "|"]
            for other in pairs["other"].unique():
                cells = pairs[pairs["other"] == other].set_index("metric")
                lines.append(f"| {label_of(other)} | " + " | ".join(
                    f"{_fmt(r['mean_diff'], r['ci_low'], r['ci_high'], 3 if c.endswith('auc') else 1)}; "
                    f"win {100 * r['win_rate']:.0f}%; p {r['wilcoxon_p']:.2g}"
                    for c, r in ((c, cells.loc[c]) for c, _, b, _ in METRICS if b)) + " |")
        lines.append("")
    return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _plots(ok: pd.DataFrame, results: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for model, group in ok.groupby("model", sort=False):
        methods = list(group["method"].unique())
        labels = [label_of(m) for m in methods]
        fig, axes = plt.subplots(2, 4, figsize=(18, 8))
        for ax, (col, label, better, scale) in zip(axes.ravel(), METRICS):
            data = [group.loc[group["method"] == m, col].astype(float).to_numpy() * scale for m in methods]
            ax.boxplot(data, showmeans=True)
            ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right", fontsize=8)
            ax.set_title(label + {1: " (higher better)", -1: " (lower better)", 0: ""}[better], fontsize=9)
        fig.suptitle(f"{model}: per-image metrics ({group['image_id'].nunique()} images)")
        fig.tight_layout()
        files.append(results / f"metrics_{_slug(model)}.png")
        fig.savefig(files[-1], dpi=90)
        plt.close(fig)

        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for ax, kind in zip(axes, ("deletion", "insertion")):
            for m, lab in zip(methods, labels):
                curves = np.stack(group.loc[group["method"] == m, f"{kind}_curve"].map(np.asarray).to_numpy())
                mean = curves.mean(0)
                half = 1.96 * curves.std(0, ddof=1) / np.sqrt(len(curves)) if len(curves) > 1 else 0 * mean
                x = np.linspace(0, 1, len(mean))
                ax.plot(x, mean, label=lab)
                ax.fill_between(x, mean - half, mean + half, alpha=0.2)
            ax.set_xlabel("fraction of pixels " + ("deleted" if kind == "deletion" else "inserted"))
            ax.set_ylabel("target probability")
            ax.set_title(f"{kind} (mean, 95% band)")
        axes[1].legend(fontsize=8)
        fig.tight_layout()
        files.append(results / f"curves_{_slug(model)}.png")
        fig.savefig(files[-1], dpi=90)
        plt.close(fig)
    return files
