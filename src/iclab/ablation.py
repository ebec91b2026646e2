"""Per-head ablation (Michel et al. 2019): exact sweeps through `head_mask`, gradient importance
(Michel et al. 2019; Bansal et al. 2023) and pruning curves.

Different ablations ride in different rows of one batch: a sweep never makes one model call per
head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from iclab.cells import CELL_KEYS, cell_examples
from iclab.metrics import bootstrap_difference
from iclab.models import HeadLayout
from iclab.runtime import Runtime
from iclab.scoring import Encoded, encode, pad_token_id, teacher_forced
from iclab.tasks import Example


@dataclass(frozen=True)
class Condition:
    """An ablation: nothing (`baseline`), one head (`L{l}H{h}`) or a whole layer (`L{l}`)."""

    layer: int = -1  # -1: baseline
    head: int = -1  # -1: every head of `layer`

    @property
    def name(self) -> str:
        if self.layer < 0:
            return "baseline"
        return f"L{self.layer}" if self.head < 0 else f"L{self.layer}H{self.head}"

    @property
    def kind(self) -> str:
        return "baseline" if self.layer < 0 else ("layer" if self.head < 0 else "head")

    def mask(self, layout: HeadLayout) -> np.ndarray:
        """`head_mask[layer, head]`: ones, zero where this condition removes heads."""
        mask = np.ones((layout.n_layers, layout.n_heads), dtype=np.float32)
        if self.layer >= 0:
            mask[self.layer, slice(None) if self.head < 0 else self.head] = 0.0
        return mask


def layer_conditions(layout: HeadLayout, layer: int) -> list[Condition]:
    """Every single head of `layer`, then the whole layer: one shard of a sweep."""
    if not 0 <= layer < layout.n_layers:
        raise ValueError(f"layer {layer} out of range (model has {layout.n_layers})")
    return [Condition(layer, h) for h in range(layout.n_heads)] + [Condition(layer)]


def evaluate_masks(runtime: Runtime, tokenizer, examples: Sequence[Example], masks: np.ndarray,
                   layout: HeadLayout, token_budget: int, max_batch: int,
                   progress: bool = True) -> pd.DataFrame:
    """Score every example under every mask `masks[m, layer, head]` in shared batches.

    Returns one row per (mask index, example): `mask`, `item`, `correct`, `gold_logprob`.
    """
    encoded = [encode(tokenizer, ex.prompt, ex.target) for ex in examples]
    return evaluate_encoded(runtime, encoded, [ex.item for ex in examples], masks, layout,
                            pad_token_id(tokenizer), token_budget, max_batch, progress)


def evaluate_encoded(runtime: Runtime, encoded: Sequence[Encoded], items: Sequence[int],
                     masks: np.ndarray, layout: HeadLayout, pad_id: int, token_budget: int,
                     max_batch: int, progress: bool = True) -> pd.DataFrame:
    """`evaluate_masks` for rows already split into prompt and answer tokens (any token data,
    e.g. the toy models' synthetic sequences)."""
    rows: list[Encoded] = [e for _ in range(len(masks)) for e in encoded]
    row_masks = np.repeat(masks, len(encoded), axis=0)
    scored = teacher_forced(runtime, rows, layout, pad_id, token_budget, max_batch,
                            progress=progress, head_masks=row_masks)
    return pd.DataFrame({
        "mask": np.repeat(np.arange(len(masks)), len(encoded)),
        "item": [item for _ in range(len(masks)) for item in items],
        "correct": scored["correct"].astype(bool),
        "gold_logprob": scored["gold_logprob"],
    })


def sweep(runtime: Runtime, tokenizer, examples: Sequence[Example],
          conditions: Sequence[Condition], layout: HeadLayout, token_budget: int, max_batch: int,
          progress: bool = True) -> pd.DataFrame:
    """Per condition and example: correct and gold log-prob under that ablation."""
    masks = np.stack([c.mask(layout) for c in conditions])
    frame = evaluate_masks(runtime, tokenizer, examples, masks, layout, token_budget, max_batch,
                           progress)
    return label_conditions(frame, conditions)


def label_conditions(frame: pd.DataFrame, conditions: Sequence[Condition]) -> pd.DataFrame:
    """Replace the `mask` index of `evaluate_*` rows by the condition's name, kind, layer, head."""
    frame.insert(0, "condition", [conditions[m].name for m in frame["mask"]])
    frame.insert(1, "kind", [conditions[m].kind for m in frame["mask"]])
    frame.insert(2, "layer", [conditions[m].layer for m in frame["mask"]])
    frame.insert(3, "head", [conditions[m].head for m in frame["mask"]])
    return frame.drop(columns="mask")


def effects(results: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Δaccuracy and Δmean gold log-prob of each condition vs baseline, paired by item, with
    bootstrap intervals and Benjamini–Hochberg q-values over all the cell's ablations (heads and
    layers) for both: Δaccuracy by the exact McNemar test, Δlog-prob by a sign-flip test.

    `hurts`/`helps` flag exact-match accuracy (the headline metric) where q < `alpha`.
    `hurts_logprob`/`helps_logprob` flag the log-prob shift: zeroing almost any head moves every
    log-prob of a deterministic model consistently, so those flags say a head matters to the
    output distribution, not that it serves the task (the random-label null shows the gap).
    """
    from statsmodels.stats.multitest import multipletests

    base = results[results["kind"] == "baseline"].set_index("item")
    rows, differences, flips = [], [], []
    for (name, kind, layer, head), frame in results[results["kind"] != "baseline"].groupby(
            ["condition", "kind", "layer", "head"], sort=False):
        frame = frame.set_index("item").loc[base.index]
        d_acc, acc_low, acc_high = bootstrap_difference(frame["correct"], base["correct"],
                                                        1 - alpha)
        d_lp, lp_low, lp_high = bootstrap_difference(frame["gold_logprob"],
                                                     base["gold_logprob"], 1 - alpha)
        differences.append(frame["gold_logprob"].to_numpy() - base["gold_logprob"].to_numpy())
        flips.append(frame["correct"].to_numpy(int) - base["correct"].to_numpy(int))
        rows.append({"condition": name, "kind": kind, "layer": layer, "head": head,
                     "n": len(frame), "accuracy": float(frame["correct"].mean()),
                     "baseline_accuracy": float(base["correct"].mean()),
                     "delta_accuracy": d_acc, "delta_accuracy_low": acc_low,
                     "delta_accuracy_high": acc_high, "delta_logprob": d_lp,
                     "delta_logprob_low": lp_low, "delta_logprob_high": lp_high})
    table = pd.DataFrame(rows)
    table["p_accuracy"] = [mcnemar_exact(d) for d in flips]
    table["q_accuracy"] = multipletests(table["p_accuracy"], alpha, method="fdr_bh")[1]
    table["p_logprob"] = sign_flip_pvalues(np.stack(differences, axis=1))
    table["q_logprob"] = multipletests(table["p_logprob"], alpha, method="fdr_bh")[1]
    for metric, suffix in (("accuracy", ""), ("logprob", "_logprob")):
        significant = table[f"q_{metric}"] < alpha
        table[f"hurts{suffix}"] = significant & (table[f"delta_{metric}"] < 0)
        table[f"helps{suffix}"] = significant & (table[f"delta_{metric}"] > 0)
    return table


def flag_counts(effects: pd.DataFrame, keys: Sequence[str] = tuple(CELL_KEYS)) -> pd.DataFrame:
    """Per cell: how many ablations were flagged (BH q < 0.05) by exact match and by log-prob,
    with n; a `null` cell (random labels, no mapping to serve) shows the false-flag rate."""
    from iclab.tasks import NULL_VARIANT

    counted = effects.assign(
        accuracy_flags=effects["hurts"] | effects["helps"],
        logprob_flags=effects["hurts_logprob"] | effects["helps_logprob"])
    table = counted.groupby(list(keys), sort=True).agg(
        n=("n", "first"), ablations=("condition", "size"), hurts=("hurts", "sum"),
        helps=("helps", "sum"), flagged=("accuracy_flags", "sum"),
        hurts_logprob=("hurts_logprob", "sum"), helps_logprob=("helps_logprob", "sum"),
        flagged_logprob=("logprob_flags", "sum")).reset_index()
    table["null"] = table["variant"] == NULL_VARIANT
    return table


def mcnemar_exact(flips: np.ndarray) -> float:
    """Two-sided exact McNemar p-value of paired exact-match changes `flips[item]` in {-1, 0, 1}
    (ablated minus baseline): a binomial test of the discordant pairs' signs at 1/2."""
    from scipy.stats import binomtest

    lost, gained = int((flips < 0).sum()), int((flips > 0).sum())
    return float(binomtest(lost, lost + gained).pvalue) if lost + gained else 1.0


PERMUTATION_RESAMPLES = 1 << 16
PERMUTATION_SEED = 0


def sign_flip_pvalues(differences: np.ndarray, resamples: int = PERMUTATION_RESAMPLES,
                      seed: int = PERMUTATION_SEED, chunk: int = 4096) -> np.ndarray:
    """Two-sided sign-flip permutation p-value of mean = 0 for each column of paired differences
    `[item, test]`: exact over all 2^n sign patterns when 2^n <= `resamples`, else seeded Monte
    Carlo with p = (1 + hits) / (1 + resamples). One matrix product tests every column at once.
    """
    d = np.asarray(differences, dtype=float)
    n = d.shape[0]
    exact = (1 << n) <= resamples
    total = (1 << n) if exact else resamples
    observed = np.abs(d.sum(axis=0))
    tolerance = 1e-12 * np.abs(d).sum(axis=0)  # sums in another order differ by rounding only
    rng = np.random.default_rng(seed)
    hits = np.zeros(d.shape[1])
    for start in range(0, total, chunk):
        size = min(chunk, total - start)
        signs = (((np.arange(start, start + size)[:, None] >> np.arange(n)) & 1) * 2.0 - 1.0
                 if exact else rng.choice([-1.0, 1.0], size=(size, n)))
        hits += (np.abs(signs @ d) >= observed - tolerance).sum(axis=0)
    return hits / total if exact else (hits + 1) / (resamples + 1)


# ---------------------------------------------------------------------------------------------
# Items: importance is ranked on items that the sweep and the pruning curve never score


def split_examples(examples: Sequence[Example]) -> tuple[list[Example], list[Example]]:
    """(ranking, scoring) halves, alternating through the draw: gradient importance is ranked on
    the first, the sweep and pruning curve score the second, so no item does both."""
    return list(examples[0::2]), list(examples[1::2])


def cell_halves(wildcards, task_settings: dict, n_test: int | None,
                demonstrations: str = "shared") -> tuple[list[Example], list[Example]]:
    """`split_examples` of 2·n_test examples of the cell (all its items if n_test is None);
    with `shared` demonstrations both halves see the same demonstration set."""
    return split_examples(cell_examples(wildcards, task_settings,
                                        None if n_test is None else 2 * n_test, demonstrations))


def item_ids(items) -> str:
    """Test-item ids as one sorted `;`-joined string: records which items a table used."""
    return ";".join(str(i) for i in sorted(int(i) for i in items))


def check_item_split(effects: pd.DataFrame, importance: pd.DataFrame, pruning: pd.DataFrame,
                     keys: Sequence[str] = tuple(CELL_KEYS)) -> None:
    """Raise unless, in every cell, the sweep and the pruning curve scored the same items and
    importance was ranked on none of them."""
    for group, frame in effects.groupby(list(keys), sort=True):
        cell = pd.DataFrame([dict(zip(keys, group))])
        scored = set(frame["items"]) | set(pruning.merge(cell, on=list(keys))["items"])
        ranked = set(importance.merge(cell, on=list(keys))["importance_items"])
        if len(scored) != 1 or len(ranked) != 1:
            raise ValueError(f"cell {group}: expected one scored and one ranking item set, "
                             f"got {len(scored)} and {len(ranked)}")
        overlap = set(scored.pop().split(";")) & set(ranked.pop().split(";"))
        if overlap:
            raise ValueError(f"cell {group}: importance was ranked on scored items {overlap}")


# ---------------------------------------------------------------------------------------------
# Gradient importance (PyTorch)


def gradient_importance(model, tokenizer, examples: Sequence[Example], layout: HeadLayout,
                        batch_size: int = 8, normalize: bool = True) -> np.ndarray:
    """`I_h = E_x |A_h(x)^T dL/dA_h(x)|` = `E_x |dL/d xi_h|` at head mask xi = 1, `[layer, head]`.

    L is the answer's negative log-likelihood (summed over its tokens). One backward pass per
    batch. With `normalize`, each layer's scores are divided by their L2 norm (Michel et al.).
    """
    encoded = [encode(tokenizer, ex.prompt, ex.target) for ex in examples]
    return encoded_importance(model, encoded, layout, pad_token_id(tokenizer), batch_size,
                              normalize)


def encoded_importance(model, encoded: Sequence[Encoded], layout: HeadLayout, pad_id: int,
                       batch_size: int = 8, normalize: bool = True) -> np.ndarray:
    """`gradient_importance` for rows already split into prompt and answer tokens."""
    import torch

    from iclab.export import TargetLogProbs
    from iclab.scoring import batch_feeds, full_head_mask

    wrapper = TargetLogProbs(model).eval()
    total = np.zeros((layout.n_layers, layout.n_heads))
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        positions = [list(range(len(e.prompt_ids) - 1, len(e.input_ids))) for e in chunk]
        feeds = batch_feeds([e.input_ids for e in chunk], positions, pad_id,
                            full_head_mask(len(chunk), layout))
        head_mask = torch.from_numpy(feeds["head_mask"]).requires_grad_(True)
        logprobs = wrapper(torch.from_numpy(feeds["input_ids"]),
                           torch.from_numpy(feeds["attention_mask"]), head_mask,
                           torch.from_numpy(feeds["target_pos"]))
        loss = logprobs.new_zeros(())
        for b, e in enumerate(chunk):
            k = len(e.target_ids)
            loss = loss - logprobs[b, torch.arange(k), torch.tensor(e.target_ids)].sum()
        (grad,) = torch.autograd.grad(loss, head_mask)
        total += grad.abs().sum(0).numpy()  # per-example |dL_x/dxi|: rows don't interact
    importance = total / len(encoded)
    return normalize_per_layer(importance) if normalize else importance


def normalize_per_layer(importance: np.ndarray) -> np.ndarray:
    """Divide each layer's head scores by their L2 norm (Michel et al. 2019)."""
    norms = np.linalg.norm(importance, axis=1, keepdims=True)
    return importance / np.where(norms > 0, norms, 1.0)


# ---------------------------------------------------------------------------------------------
# Pruning


def pruning_masks(order: Sequence[tuple[int, int]], layout: HeadLayout,
                  fractions: Sequence[float]) -> np.ndarray:
    """Cumulative masks `[step, layer, head]`: at each fraction, the first heads of `order` off.

    Heads are only ever removed: each step's removed set contains the previous one's.
    """
    total = layout.n_layers * layout.n_heads
    if sorted(order) != sorted((l, h) for l in range(layout.n_layers)
                               for h in range(layout.n_heads)):
        raise ValueError("pruning order must list every head exactly once")
    masks = np.ones((len(fractions), layout.n_layers, layout.n_heads), dtype=np.float32)
    for step, fraction in enumerate(fractions):
        for layer, head in order[: int(round(fraction * total))]:
            masks[step, layer, head] = 0.0
    return masks


def importance_order(importance: np.ndarray) -> list[tuple[int, int]]:
    """Heads from least to most important (ties broken by position, deterministic)."""
    flat = np.argsort(importance, axis=None, kind="stable")
    return [tuple(int(v) for v in np.unravel_index(i, importance.shape)) for i in flat]


def random_order(layout: HeadLayout, seed: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    heads = [(l, h) for l in range(layout.n_layers) for h in range(layout.n_heads)]
    return [heads[i] for i in rng.permutation(len(heads))]


def importance_vs_effects(importance: pd.DataFrame, effects: pd.DataFrame,
                          keys: Sequence[str] = tuple(CELL_KEYS)) -> pd.DataFrame:
    """Spearman rank correlation of gradient importance with the exact single-head effect
    (harm = -Δlog-prob, and -Δaccuracy) per model and cell."""
    from scipy.stats import spearmanr

    heads = effects[effects["kind"] == "head"]
    merged = heads.merge(importance, on=[*keys, "layer", "head"])
    rows = []
    for group, frame in merged.groupby(list(keys), sort=True):
        rho_lp = spearmanr(frame["importance"], -frame["delta_logprob"])
        rho_acc = spearmanr(frame["importance"], -frame["delta_accuracy"])
        rows.append({**dict(zip(keys, group)), "heads": len(frame),
                     "spearman_logprob_harm": float(rho_lp.statistic),
                     "p_logprob_harm": float(rho_lp.pvalue),
                     "spearman_accuracy_harm": float(rho_acc.statistic),
                     "p_accuracy_harm": float(rho_acc.pvalue)})
    return pd.DataFrame(rows)
