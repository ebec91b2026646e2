"""seaborn figures; each saved as PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from iclab.io import atomic_path  # noqa: E402

# Reported GPT-3 results on the copy task (Rong 2021, seed 003): 6720 items.
COPY_REFERENCE = {"GPT-3 Davinci": 6720 / 6720, "GPT-3 Ada": 6705 / 6720}


def save_figure(fig: plt.Figure, png: str | Path, pdf: str | Path) -> None:
    """Write PNG and PDF atomically with fixed metadata so reruns give identical files."""
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        with atomic_path(path) as tmp:
            meta = {"Software": None} if fmt == "png" else {"Creator": None, "Producer": None,
                                                            "CreationDate": None}
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight", metadata=meta)
    plt.close(fig)


def copy_accuracy(table: pd.DataFrame, png: str | Path, pdf: str | Path) -> None:
    """Copy-task accuracy vs shots per model, Wilson 95% bars, GPT-3 reference lines."""
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    palette = sns.color_palette("colorblind", n_colors=max(1, table["model"].nunique()) + 2)
    for color, (model, frame) in zip(palette, table.groupby("model", sort=True)):
        frame = frame.sort_values("shots")
        ax.errorbar(frame["shots"], frame["accuracy"],
                    yerr=[frame["accuracy"] - frame["ci_low"], frame["ci_high"] - frame["accuracy"]],
                    marker="o", capsize=3, color=color, label=f"{model} (n={frame['n'].iloc[0]})")
    for (label, value), marker in zip(COPY_REFERENCE.items(), ["*", "D"]):
        ax.axhline(value, color="0.6", linestyle=":", linewidth=1)
        ax.plot([5], [value], marker=marker, color="0.3", markersize=8, fillstyle="none",
                linestyle="none", label=f"{label} (reported, 5-shot): {value:.2%}")
    ax.set(xlabel="demonstrations (shots)", ylabel="exact-match accuracy", ylim=(0, 1.05),
           title="Copy task: 5 letters from a–h")
    ax.set_xticks(sorted(set(table["shots"]) | {5}))
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, png, pdf)
