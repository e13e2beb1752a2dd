"""A small figure of the sanity checks: similarity against randomisation depth, one line per map."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .sanity import Sanity, label_of


def sanity_figure(checks: Sanity, dpi: int = 90) -> Image.Image:
    """Spearman and SSIM with the original against depth (one line per map), and the random-logit Spearman."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .render import figure_image

    rand, logit = checks.randomisation, checks.random_logit
    names = list(rand.similarity)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    ticks = ["original", *rand.units[:rand.depth]]
    for ax, measure in zip(axes[:2], ("spearman", "ssim")):
        for i, name in enumerate(names):
            ys = getattr(rand, measure)(name)
            ax.plot(range(len(ys)), ys, marker="o", ls="--" if name not in logit.class_specific or i >= 3 else "-",
                    label=label_of(name))
        ax.axvline(min(rand.target_step, rand.depth), color="0.4", ls=":", lw=1, label="target layer random")
        ax.set_xticks(range(len(ticks)), ticks, rotation=25, ha="right", fontsize=7)
        ax.set_ylim(-1.05 if measure == "spearman" else None, 1.05)
        ax.set_title(f"Randomisation: {'Spearman' if measure == 'spearman' else 'SSIM'} with the original",
                     fontsize=9)
    axes[0].legend(fontsize=7, loc="lower left")
    from matplotlib.patches import Patch

    values = [logit.similarity[n].spearman for n in names]
    colours = ["C0" if logit.class_specific[n] else "0.6" for n in names]
    axes[2].bar(range(len(names)), np.nan_to_num(values, nan=0.0), color=colours)
    for i, v in enumerate(values):
        if np.isnan(v):
            axes[2].text(i, 0.05, "undefined\n(constant map)", ha="center", fontsize=6, rotation=90)
    axes[2].set_xticks(range(len(names)), [label_of(n) for n in names], rotation=25, ha="right", fontsize=7)
    axes[2].set_ylim(-1.05, 1.05)
    axes[2].set_title(f"Random logit: Spearman, maps for {logit.target_label[:24]}\nvs {logit.other_label[:24]} "
                      f"(class {logit.other})", fontsize=9)
    axes[2].legend(handles=[Patch(color="C0", label="class-specific"),
                            Patch(color="0.6", label="ignores the class (identical by construction)")],
                   fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.set_dpi(dpi)
    return figure_image(fig)
