"""Figures of causal mediation per head: average indirect effects (Todd et al. 2024), function
vectors against a random-head control, attribution patching against the exact sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from iclab.mediation_tables import NO_VECTOR
from iclab.plots import _theme, _with_cells, plt, save_figure, sns

KEYS = ["model", "task", "variant", "shots", "seed"]


def aie_heatmap(aie: pd.DataFrame, cells: pd.DataFrame, png: str | Path,
                pdf: str | Path) -> None:
    """Layer × head AIE per cell (the head's mean at the last token of shuffled-label prompts),
    heads restoring the answer at BH q < 0.05 marked; the title gives the clean − shuffled gap
    that the heads restore, or says the cell is not applicable."""
    _theme()
    aie, names = _with_cells(aie)
    fig, axes = plt.subplots(1, len(names), squeeze=False,
                             figsize=(2 + 0.45 * aie["head"].nunique() * len(names),
                                      1.5 + 0.22 * (aie["layer"].max() + 1)))
    for ax, name in zip(axes[0], names):
        frame = aie[aie["cell"] == name]
        grid = frame.pivot(index="layer", columns="head", values="aie")
        bound = max(float(np.nanmax(np.abs(grid.to_numpy()))), 1e-9)
        sns.heatmap(grid, ax=ax, cmap="RdBu", vmin=-bound, vmax=bound, center=0,
                    cbar_kws={"label": "AIE: Δ P(answer)"}, linewidths=0.2, linecolor="white")
        flagged = frame[frame["restores"]]
        ax.scatter(flagged["head"] + 0.5, flagged["layer"] + 0.5, marker=".", color="black", s=8)
        cell = cells.merge(frame[KEYS].drop_duplicates(), on=KEYS).iloc[0]
        gap = (f"clean − shuffled P(answer) {cell['gap']:.3f} [{cell['gap_low']:.3f}, "
               f"{cell['gap_high']:.3f}], n = {cell['n']}" if cell["applicable"]
               else f"not applicable: {cell['reason']}")
        ax.set(title=f"{name}\n{gap}", xlabel="head", ylabel="layer")
    fig.tight_layout()
    save_figure(fig, png, pdf)


def function_vector_layers(layers: pd.DataFrame, png: str | Path, pdf: str | Path) -> None:
    """Accuracy (exact match with the stop) against the layer the vector is added at, function
    vector vs a random-head vector of the same norm, Wilson 95% bands; the prompts without a
    vector as a horizontal band; one row per cell, one panel per prompt kind."""
    _theme()
    layers, names = _with_cells(layers)
    prompts = sorted(layers["prompt"].unique())
    fig, axes = plt.subplots(len(names), len(prompts), squeeze=False, sharey=True,
                             figsize=(4.4 * len(prompts), 3.2 * len(names)))
    palette = {"fv": sns.color_palette("colorblind")[0], "random": "0.5"}
    for row, name in zip(axes, names):
        cell = layers[layers["cell"] == name]
        for ax, prompt in zip(row, prompts):
            frame = cell[cell["prompt"] == prompt]
            base = frame[frame["vector"] == NO_VECTOR].iloc[0]
            ax.axhspan(base["ci_low"], base["ci_high"], color="0.85")
            ax.axhline(base["accuracy"], color="0.3", linewidth=0.8, label="no vector")
            for vector, color in palette.items():
                line = frame[frame["vector"] == vector].sort_values("layer")
                ax.plot(line["layer"], line["accuracy"], color=color, label=vector)
                ax.fill_between(line["layer"], line["ci_low"], line["ci_high"], color=color,
                                alpha=0.2)
            ax.axvline(base["fv_layer"], color="0.5", linestyle=":", linewidth=0.8)
            ax.set(title=f"{name}\n{prompt.replace('_', '-')} prompts, n = {base['n']}, "
                         f"k = {base['top_k']}", xlabel="layer the vector is added at",
                   ylabel="accuracy (exact match)", ylim=(-0.02, 1.02))
            ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, png, pdf)


def attribution_vs_exact(aie: pd.DataFrame, attribution: pd.DataFrame, png: str | Path,
                         pdf: str | Path) -> None:
    """Each head's AtP and AtP* estimate against its exact AIE, one row per cell, Spearman ρ,
    top-10 recall and the cost in model passes shown."""
    _theme()
    aie, names = _with_cells(aie)
    estimators = [("atp", "AtP"), ("atp_star", "AtP* (GradDrop)")]
    fig, axes = plt.subplots(len(names), len(estimators), squeeze=False,
                             figsize=(4.2 * len(estimators), 3.6 * len(names)))
    for row, name in zip(axes, names):
        frame = aie[aie["cell"] == name]
        for ax, (estimator, label) in zip(row, estimators):
            sns.scatterplot(data=frame, x="aie", y=estimator, hue="layer", palette="viridis",
                            s=14, ax=ax, legend=False)
            stats = attribution[attribution["estimator"] == estimator].merge(
                frame[KEYS].drop_duplicates(), on=KEYS).iloc[0]
            ax.set(title=f"{name}\n{label}: ρ = {stats['spearman']:.2f}, top-{stats['top_k']} "
                         f"recall {stats['top_k_recall']:.0%}, {stats['backward_passes']} backward vs "
                         f"{stats['exact_forward_passes']} exact passes",
                   xlabel="exact AIE (patched − shuffled P(answer))",
                   ylabel=f"{label} estimate")
    fig.tight_layout()
    save_figure(fig, png, pdf)
