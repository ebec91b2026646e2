"""Attention analysis (AQ/H/AF as the source article defines them, docs/methods.md): attention
rows of chosen query positions from a second ONNX graph, the attention metrics (AQ, entropy,
focus) with chance and uniform-attention baselines, and induction-head scores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

ATTENTION_INPUTS = ["input_ids", "attention_mask", "query_pos"]


class QueryAttention(nn.Module):
    """`(input_ids[B,T], attention_mask[B,T], query_pos[B,Q]) -> attention[B,layers,heads,Q,T]`.

    Eager attention probabilities, gathered per layer at the query rows, so only those rows
    leave the graph (never the T×T maps).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, query_pos):
        out = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                    output_attentions=True, use_cache=False)
        rows = []
        for layer_attention in out.attentions:  # [B, H, T, T]
            heads, length = layer_attention.shape[1], layer_attention.shape[-1]
            index = query_pos[:, None, :, None].expand(-1, heads, -1, length)
            rows.append(torch.gather(layer_attention, 2, index))  # [B, H, Q, T]
        return torch.stack(rows, dim=1).float()


def export_attention_onnx(model: nn.Module, path: Path, opset: int = 18) -> Path:
    """Export `QueryAttention(model)` with dynamic batch, length and query count."""
    from torch.export import Dim

    batch, length, queries = Dim("batch"), Dim("length"), Dim("queries")
    generator = torch.Generator().manual_seed(0)
    example = (torch.randint(3, model.config.vocab_size, (2, 12), generator=generator),
               torch.ones(2, 12, dtype=torch.int64), torch.tensor([[9, 10, 11], [5, 6, 7]]))
    example[1][1, 9:] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        program = torch.onnx.export(
            QueryAttention(model).eval(), example, dynamo=True, opset_version=opset,
            input_names=ATTENTION_INPUTS, output_names=["attention"],
            dynamic_shapes={"input_ids": {0: batch, 1: length},
                            "attention_mask": {0: batch, 1: length},
                            "query_pos": {0: batch, 1: queries}},
            external_data=False)
    program.save(str(path), external_data=False)
    return path


def attention_feeds(sequences: Sequence[list[int]], queries: Sequence[list[int]],
                    pad_id: int) -> dict[str, np.ndarray]:
    """Right-padded inputs; query lists padded by repeating their last position."""
    length = max(len(s) for s in sequences)
    q = max(len(p) for p in queries)
    feeds = {"input_ids": np.full((len(sequences), length), pad_id, dtype=np.int64),
             "attention_mask": np.zeros((len(sequences), length), dtype=np.int64),
             "query_pos": np.zeros((len(sequences), q), dtype=np.int64)}
    for row, (seq, pos) in enumerate(zip(sequences, queries)):
        feeds["input_ids"][row, : len(seq)] = seq
        feeds["attention_mask"][row, : len(seq)] = 1
        feeds["query_pos"][row] = list(pos) + [pos[-1]] * (q - len(pos))
    return feeds


def torch_attention(model: nn.Module, feeds: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return QueryAttention(model).eval()(
            *(torch.from_numpy(feeds[k]) for k in ATTENTION_INPUTS)).numpy()


# ---------------------------------------------------------------------------------------------
# Seed 000 metrics over one attention row a[0..L-1] (the prompt up to the query position)


def attention_quality(a: np.ndarray, relevant: np.ndarray) -> float:
    """`AQ = Σ_{j∈R} a_j / Σ_k a_k − Σ_{j∉R} a_j / (L − |R|)`; the second term is 0 if R = all."""
    relevant = np.asarray(relevant, dtype=bool)
    total = a.sum()
    share = a[relevant].sum() / total if total > 0 else 0.0
    others = (~relevant).sum()
    return float(share - (a[~relevant].sum() / others if others else 0.0))


def attention_entropy(a: np.ndarray) -> float:
    """`H = −Σ_j a_j log a_j`, with 0 log 0 = 0."""
    positive = a[a > 0]
    return float(-(positive * np.log(positive)).sum())


def attention_focus(a: np.ndarray, relevant: np.ndarray) -> float:
    """`AF = Σ_{j∈R} a_j / |R|` (0 when R is empty)."""
    relevant = np.asarray(relevant, dtype=bool)
    count = relevant.sum()
    return float(a[relevant].sum() / count) if count else 0.0


def normalized_entropy(a: np.ndarray) -> float:
    """`H / log L`: 1 for uniform attention over the row's L tokens, 0 for one-hot (0 if L = 1)."""
    return float(attention_entropy(a) / np.log(len(a))) if len(a) > 1 else 0.0


def first_token_share(a: np.ndarray) -> float:
    """Share of the row's attention on position 0, where many LMs park attention (a sink)."""
    total = a.sum()
    return float(a[0] / total) if total > 0 else 0.0


def uniform_baselines(length: int, relevant: np.ndarray) -> dict[str, float]:
    """AQ and AF of uniform causal attention `a_j = 1/L` over the same L tokens and R:
    `AQ = (|R| − 1)/L` and `AF = 1/L` for 0 < |R| < L (edge cases as the metrics define them)."""
    uniform = np.full(length, 1.0 / length)
    return {"aq_uniform": attention_quality(uniform, relevant),
            "af_uniform": attention_focus(uniform, relevant)}


def random_token_mask(length: int, size: int, seed: int) -> np.ndarray:
    """A seeded random set of `size` of the `length` positions: R's chance counterpart."""
    mask = np.zeros(length, dtype=bool)
    mask[np.random.default_rng(seed).choice(length, size=size, replace=False)] = True
    return mask


def relevant_token_mask(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]],
                        length: int) -> np.ndarray:
    """Tokens (by character offsets) that overlap any relevant character span."""
    mask = np.zeros(length, dtype=bool)
    for t, (start, end) in enumerate(offsets[:length]):
        mask[t] = end > start and any(start < s_end and s_start < end for s_start, s_end in spans)
    return mask


# ---------------------------------------------------------------------------------------------
# Induction heads (Olsson et al. 2022)


def induction_sequences(vocab_size: int, length: int, count: int, seed: int, bos_id: int | None,
                        exclude_frequent: int = 1000, exclude_rare_fraction: float = 0.1,
                        ) -> np.ndarray:
    """`count` sequences `[BOS] r r` of `length` distinct random tokens repeated once.

    BPE ids follow merge order, so the lowest ids (bytes, frequent merges) and the highest
    (rare merges) are excluded.
    """
    low = min(exclude_frequent, vocab_size // 4)
    high = int(vocab_size * (1 - exclude_rare_fraction))
    if high - low < length:
        raise ValueError(f"vocabulary band [{low}, {high}) too small for {length} distinct tokens")
    rng = np.random.default_rng(seed)
    halves = np.stack([rng.choice(np.arange(low, high), size=length, replace=False)
                       for _ in range(count)])
    sequences = np.concatenate([halves, halves], axis=1)
    if bos_id is not None:
        sequences = np.concatenate([np.full((count, 1), bos_id), sequences], axis=1)
    return sequences.astype(np.int64)


def prefix_matching_score(attention: np.ndarray, length: int, offset: int) -> np.ndarray:
    """Mean attention from each second-half token to the token after its earlier copy.

    `attention[..., Q, T]` has one row per second-half query (Q = length, in order); `offset`
    is 1 with a BOS token, else 0. Query i sits at `offset + length + i`; its earlier copy at
    `offset + i`, whose successor, the prefix-matching target, at `offset + i + 1`.
    """
    q = np.arange(length)
    targets = offset + q + 1
    picked = np.take_along_axis(attention, np.broadcast_to(targets[:, None],
                                attention.shape[:-1] + (1,)), axis=-1)[..., 0]
    return picked.mean(axis=-1)


# ---------------------------------------------------------------------------------------------
# Per-example analysis through a runtime of the attention graph


def prompt_attention(runtime, tokenizer, examples, token_budget: int, max_batch: int,
                     progress: bool = True):
    """Yield `(example, prompt_ids, relevant_mask, attention[layers, heads, L])` per example:
    the attention row of the last prompt token (the one that predicts the answer)."""
    from tqdm import tqdm

    from iclab.runtime import length_sorted_batches
    from iclab.scoring import pad_token_id

    encoded = []
    for ex in examples:
        tokens = tokenizer(ex.prompt, return_offsets_mapping=True)
        ids = list(tokens["input_ids"])
        relevant = relevant_token_mask(tokens["offset_mapping"], ex.relevant_spans(), len(ids))
        encoded.append((ids, relevant))
    lengths = [len(ids) for ids, _ in encoded]
    batches = list(length_sorted_batches(lengths, token_budget, max_batch))
    for rows in tqdm(batches, desc="attention rows", disable=not progress, mininterval=5):
        feeds = attention_feeds([encoded[i][0] for i in rows], [[lengths[i] - 1] for i in rows],
                                pad_token_id(tokenizer))
        attention = runtime.run(feeds)  # [B, layers, heads, 1, T]
        for b, i in enumerate(rows):
            ids, relevant = encoded[i]
            yield examples[i], ids, relevant, attention[b, :, :, 0, : len(ids)]


HEAD_METRICS = ["aq", "aq_uniform", "aq_random", "entropy", "entropy_norm", "af", "af_uniform",
                "af_random", "first_token_share"]


def head_metrics(attention: np.ndarray, relevant: np.ndarray,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """`HEAD_METRICS` per `[layer, head]` for one prompt's attention rows `[L, H, T]`: AQ, entropy
    and focus, their baselines (uniform attention; a random token set of R's size drawn with
    `seed`) and the first token's share."""
    layers, heads, length = attention.shape
    chance = random_token_mask(length, int(np.sum(relevant)), seed)
    out = {name: np.zeros((layers, heads)) for name in HEAD_METRICS}
    for name, value in uniform_baselines(length, relevant).items():
        out[name][:] = value
    for layer, head in np.ndindex(layers, heads):
        row = attention[layer, head]
        out["aq"][layer, head] = attention_quality(row, relevant)
        out["aq_random"][layer, head] = attention_quality(row, chance)
        out["entropy"][layer, head] = attention_entropy(row)
        out["entropy_norm"][layer, head] = normalized_entropy(row)
        out["af"][layer, head] = attention_focus(row, relevant)
        out["af_random"][layer, head] = attention_focus(row, chance)
        out["first_token_share"][layer, head] = first_token_share(row)
    return out


def metrics_vs_effects(metrics: pd.DataFrame, induction: pd.DataFrame,
                       effects: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation of each head's AQ, entropy, focus (same cell) and induction score
    (same model) with the harm of ablating it (−Δ mean gold log-prob), per model and cell."""
    from scipy.stats import spearmanr

    from iclab.cells import CELL_KEYS

    heads = effects[effects["kind"] == "head"][[*CELL_KEYS, "layer", "head", "delta_logprob"]]
    rows = []
    for group, frame in heads.groupby(CELL_KEYS, sort=True):
        cell = dict(zip(CELL_KEYS, group))
        same_cell = metrics.merge(pd.DataFrame([cell]), on=CELL_KEYS)
        candidates = [(name, same_cell, name) for name in ("aq", "entropy", "af")]
        candidates.append(("prefix_matching",
                           induction[induction["model"] == cell["model"]], "prefix_matching"))
        for metric, table, column in candidates:
            merged = frame.merge(table[["layer", "head", column]], on=["layer", "head"])
            if len(merged) < 3:
                continue
            rho = spearmanr(merged[column], -merged["delta_logprob"])
            rows.append({**cell, "metric": metric, "heads": len(merged),
                         "spearman_vs_harm": float(rho.statistic), "p": float(rho.pvalue)})
    return pd.DataFrame(rows, columns=[*CELL_KEYS, "metric", "heads", "spearman_vs_harm", "p"])
