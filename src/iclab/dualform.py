"""ICL as implicit finetuning (seed 003; Dai et al. 2022, microsoft/LMOps understand_icl).

Three settings on the same test items: zero-shot (ZSL), ICL with k demonstrations, and FT =
zero-shot after finetuning only the attention key/value projections on those demonstrations
(plain SGD, batch size 1, one epoch, loss on all tokens). Metrics: Rec2FTP, SimAOU, SimAM,
Kendall; the same on a randomly initialised model of the same architecture as a control.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from iclab.heads import output_projections

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# The dual form on random matrices


def linear_attention(w_k: np.ndarray, w_v: np.ndarray, tokens: np.ndarray,
                     q: np.ndarray) -> np.ndarray:
    """Unnormalised linear attention of query `q` over `tokens[n, d]`: `W_V X (W_K X)^T q`."""
    keys, values = tokens @ w_k.T, tokens @ w_v.T
    return values.T @ (keys @ q)


def dual_form(w_k: np.ndarray, w_v: np.ndarray, demos: np.ndarray, query_tokens: np.ndarray,
              q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(W_ZSL, ΔW_ICL)`: attention over [demos; query tokens] = `W_ZSL q + ΔW_ICL q`, with
    `ΔW_ICL = Σ_i (W_V x'_i) ⊗ (W_K x'_i)` summed over demonstration tokens (Dai et al. eq. 7)."""
    w_zsl = sum(np.outer(w_v @ x, w_k @ x) for x in query_tokens)
    delta_icl = sum(np.outer(w_v @ x, w_k @ x) for x in demos)
    return w_zsl, delta_icl


# ---------------------------------------------------------------------------------------------
# Reading a model


@dataclass
class Probe:
    """What one forward pass gives at its last token."""

    attention_output: np.ndarray  # [layers, hidden]: the attention sublayer's output (o_proj)
    attention_rows: np.ndarray  # [layers, heads, T]: the last token's attention probabilities
    kv_inputs: np.ndarray  # [layers, hidden]: the input of the key/value projections


def kv_modules(model: nn.Module) -> list[tuple[nn.Module, ...]]:
    """Per layer, the modules holding the key and value projections."""
    base = model.base_model
    if hasattr(base, "layers"):
        return [(layer.self_attn.k_proj, layer.self_attn.v_proj) for layer in base.layers]
    if hasattr(base, "h"):
        return [(block.attn.c_attn,) for block in base.h]  # fused q|k|v
    raise TypeError(f"no known key/value projections in {type(model).__name__}")


def probe(model: nn.Module, ids: Sequence[int]) -> Probe:
    """One eager forward of `ids`; attention output, attention row and k/v input at the end."""
    outputs, inputs = {}, {}
    handles = []
    for layer, proj in enumerate(output_projections(model)):
        handles.append(proj.register_forward_hook(
            lambda m, a, out, layer=layer: outputs.__setitem__(layer, out[0, -1].detach())))
    for layer, modules in enumerate(kv_modules(model)):
        handles.append(modules[0].register_forward_hook(
            lambda m, a, out, layer=layer: inputs.__setitem__(layer, a[0][0, -1].detach())))
    try:
        with torch.no_grad():
            out = model(torch.tensor([list(ids)]), output_attentions=True, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    layers = len(outputs)
    return Probe(
        attention_output=torch.stack([outputs[l] for l in range(layers)]).float().numpy(),
        attention_rows=torch.stack([a[0, :, -1] for a in out.attentions]).float().numpy(),
        kv_inputs=torch.stack([inputs[l] for l in range(layers)]).float().numpy())


def choice_logprobs(model: nn.Module, tokenizer, prompt: str, choices: Sequence[str]) -> np.ndarray:
    """`log P(" choice" | prompt)` summed over each choice's tokens."""
    from iclab.scoring import encode

    scores = []
    for choice in choices:
        enc = encode(tokenizer, prompt, f" {choice}")
        with torch.no_grad():
            logits = model(torch.tensor([enc.prompt_ids + enc.target_ids]), use_cache=False).logits
        logprobs = torch.log_softmax(logits[0].float(), -1)
        p = len(enc.prompt_ids)
        scores.append(float(sum(logprobs[p - 1 + j, t] for j, t in enumerate(enc.target_ids))))
    return np.array(scores)


# ---------------------------------------------------------------------------------------------
# Finetuning the key/value projections


@dataclass
class TrainingTrace:
    """Per demonstration token, per layer: k/v input x_i and |∂L/∂(value output)| (Kendall)."""

    tokens: list[int] = field(default_factory=list)
    kv_inputs: list[np.ndarray] = field(default_factory=list)  # each [layers, hidden]
    value_grad_norms: list[np.ndarray] = field(default_factory=list)  # each [layers]


def kv_parameters(model: nn.Module) -> list[tuple[nn.Parameter, torch.Tensor | None]]:
    """The trainable key/value parameters and, for fused projections, a gradient mask."""
    params = []
    for modules in kv_modules(model):
        if len(modules) == 2:  # separate k_proj, v_proj
            params += [(p, None) for m in modules for p in m.parameters()]
        else:  # GPT-2 Conv1D c_attn: weight [d, 3d], bias [3d]; train the k and v thirds only
            (fused,) = modules
            d = fused.weight.shape[0]
            for p in fused.parameters():
                mask = torch.ones_like(p)
                mask[..., :d] = 0.0
                params.append((p, mask))
    return params


def finetune_kv(model: nn.Module, tokenizer, demos: Sequence[tuple[str, str]], lr: float,
                trace: TrainingTrace | None = None) -> nn.Module:
    """A copy of `model` after one epoch of SGD (batch size 1) on the demonstrations, one
    training sequence `Input: x\\nOutput: y\\n` each, loss on all tokens; only k/v change."""
    tuned = copy.deepcopy(model).train(False)
    for p in tuned.parameters():
        p.requires_grad_(False)
    trainable = kv_parameters(tuned)
    for p, mask in trainable:
        p.requires_grad_(True)
        if mask is not None:
            p.register_hook(lambda g, mask=mask: g * mask)
    optimizer = torch.optim.SGD([p for p, _ in trainable], lr=lr)
    for dx, dy in demos:
        ids = torch.tensor([tokenizer(f"Input: {dx}\nOutput: {dy}\n").input_ids])
        captured: dict[int, torch.Tensor] = {}
        grads: dict[int, torch.Tensor] = {}
        handles = []
        if trace is not None:
            for layer, modules in enumerate(kv_modules(tuned)):
                value_module = modules[-1]

                def keep(m, a, out, layer=layer):
                    captured[layer] = a[0][0].detach()
                    out.register_hook(lambda g: grads.__setitem__(layer, g[0].detach()))

                handles.append(value_module.register_forward_hook(keep))
        optimizer.zero_grad()
        loss = tuned(ids, labels=ids, use_cache=False).loss
        loss.backward()
        optimizer.step()
        for handle in handles:
            handle.remove()
        if trace is not None:
            layers = len(captured)
            hidden = captured[0].shape[-1]
            for t in range(ids.shape[1]):
                trace.tokens.append(int(ids[0, t]))
                trace.kv_inputs.append(np.stack([captured[l][t].float().numpy()
                                                 for l in range(layers)]))
                # GPT-2's fused output: the value third is the last `hidden` columns.
                trace.value_grad_norms.append(np.array([
                    float(grads[l][t, -hidden:].norm()) for l in range(layers)]))
    for p in tuned.parameters():
        p.requires_grad_(False)
    return tuned.eval()


# ---------------------------------------------------------------------------------------------
# Metrics


def rec2ftp(zsl_correct, ft_correct, icl_correct) -> tuple[float, int]:
    """`#(ZSL wrong ∧ FT right ∧ ICL right) / #(ZSL wrong ∧ FT right)` and its denominator."""
    zsl, ft, icl = (np.asarray(v, dtype=bool) for v in (zsl_correct, ft_correct, icl_correct))
    base = ~zsl & ft
    n = int(base.sum())
    return (float((base & icl).sum() / n) if n else float("nan")), n


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denominator) if denominator > 0 else 0.0


def unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)


def update_similarity(updates_a: np.ndarray, updates_b: np.ndarray) -> np.ndarray:
    """Per layer: cosine of two update vectors `[layers, hidden]`."""
    return np.array([cosine(a, b) for a, b in zip(updates_a, updates_b)])


def sim_aou(zsl: np.ndarray, icl: np.ndarray, ft: np.ndarray) -> np.ndarray:
    """Per layer: cosine of (ICL − ZSL) and (FT − ZSL) updates of L2-normalised attention outputs."""
    return update_similarity(unit(icl) - unit(zsl), unit(ft) - unit(zsl))


def sim_am(rows_a: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
    """Per layer: cosine of two attention maps `[layers, heads, Q]`, averaged over heads."""
    return np.array([np.mean([cosine(a, b) for a, b in zip(la, lb)])
                     for la, lb in zip(rows_a, rows_b)])


def ft_token_attention(trace: TrainingTrace, query_input: np.ndarray) -> np.ndarray:
    """FT's 'attention' to each training token per layer: `‖∂L/∂v_i‖ · |x_i · q|` — the size of
    token i's term in the SGD update of W_V applied to the query (the dual form)."""
    x = np.stack(trace.kv_inputs)  # [tokens, layers, hidden]
    g = np.stack(trace.value_grad_norms)  # [tokens, layers]
    return (g * np.abs(np.einsum("tlh,lh->tl", x, query_input))).T  # [layers, tokens]


# ---------------------------------------------------------------------------------------------
# One cell: select the learning rate, finetune, compare ZSL / ICL / FT


def split_cell(data, shots: int, n_test: int | None, n_validation: int, seed: int):
    """One balanced demonstration set, validation items (demo pool minus the demonstrations,
    for choosing the learning rate) and test items, all seeded."""
    from iclab.tasks import balanced_draw

    rng = np.random.default_rng(seed)
    demo_ids = balanced_draw(rng, data.demo_pool, data.items, shots)
    rest = np.array([i for i in data.demo_pool if i not in set(demo_ids)])
    if len(rest) < n_validation:
        raise ValueError(f"{data.name}: only {len(rest)} items left for {n_validation} validation")
    validation = np.sort(rng.choice(rest, size=n_validation, replace=False))
    # Custom tasks share one pool: no test item may be a demonstration or a validation item.
    pool = np.setdiff1d(data.test_pool, np.concatenate([demo_ids, validation]))
    test = (pool if n_test is None or n_test >= len(pool)
            else np.sort(rng.choice(pool, size=n_test, replace=False)))
    demos = tuple((data.items[i].x, data.items[i].y) for i in demo_ids)
    return demos, [data.items[i] for i in validation], [(int(i), data.items[i]) for i in test]


def zero_shot_prompt(x: str) -> str:
    return f"Input: {x}\nOutput:"


def choice_accuracy(model, tokenizer, items) -> float:
    hits = [it.choices[int(np.argmax(choice_logprobs(model, tokenizer, zero_shot_prompt(it.x),
                                                     it.choices)))] == it.y for it in items]
    return float(np.mean(hits))


def select_learning_rate(model, tokenizer, demos, validation, grid: Sequence[float]):
    """Declared rule: the grid value with the best zero-shot validation accuracy after FT; ties
    go to the larger learning rate (the strongest update that does as well: with a tiny rate FT
    would trivially equal ZSL)."""
    scores = {lr: choice_accuracy(finetune_kv(model, tokenizer, demos, lr), tokenizer, validation)
              for lr in sorted(grid)}
    best = max(scores.values())
    return max(lr for lr, acc in scores.items() if acc == best), scores


def compare_settings(model, tokenizer, data, shots: int, n_test: int | None, n_validation: int,
                     lr_grid: Sequence[float], seed: int):
    """ZSL vs ICL vs FT on one cell. Returns (per-item rows, per-layer rows, summary)."""
    import pandas as pd
    from scipy.stats import kendalltau

    demos, validation, test = split_cell(data, shots, n_test, n_validation, seed)
    lr, validation_scores = select_learning_rate(model, tokenizer, demos, validation, lr_grid)
    trace = TrainingTrace()
    tuned = finetune_kv(model, tokenizer, demos, lr, trace)
    icl_prefix = "".join(f"Input: {dx}\nOutput: {dy}\n" for dx, dy in demos)
    rng = np.random.default_rng(seed + 1)
    items, layers = [], []
    skipped = {"simam": 0, "kendall": 0}  # items whose tokens do not line up across settings
    for index, it in test:
        zsl_prompt = zero_shot_prompt(it.x)
        zsl_ids = tokenizer(zsl_prompt).input_ids
        icl_ids = tokenizer(icl_prefix + zsl_prompt).input_ids
        n_demo = len(icl_ids) - len(zsl_ids)
        aligned_query = icl_ids[n_demo:] == zsl_ids
        predictions = {}
        for setting, net, prompt in (("zsl", model, zsl_prompt), ("icl", model, icl_prefix + zsl_prompt),
                                     ("ft", tuned, zsl_prompt)):
            scores = choice_logprobs(net, tokenizer, prompt, it.choices)
            predictions[setting] = it.choices[int(np.argmax(scores))]
        items.append({"item": index, "input": it.x, "target": it.y,
                      **{f"{s}_prediction": p for s, p in predictions.items()},
                      **{f"{s}_correct": p == it.y for s, p in predictions.items()}})
        zsl, icl, ft = probe(model, zsl_ids), probe(model, icl_ids), probe(tuned, zsl_ids)
        simaou = sim_aou(zsl.attention_output, icl.attention_output, ft.attention_output)
        icl_update = unit(icl.attention_output) - unit(zsl.attention_output)
        simaou_random = update_similarity(icl_update, rng.standard_normal(icl_update.shape))
        if aligned_query:
            icl_on_query = icl.attention_rows[:, :, n_demo:]
            simam = sim_am(icl_on_query, ft.attention_rows)
            simam_zsl = sim_am(icl_on_query, zsl.attention_rows)
        else:
            simam = simam_zsl = np.full(len(simaou), np.nan)
            skipped["simam"] += 1
        kendall = np.full(len(simaou), np.nan)
        if trace.tokens != icl_ids[:n_demo]:
            skipped["kendall"] += 1
        else:
            ft_attention = ft_token_attention(trace, ft.kv_inputs)
            icl_attention = icl.attention_rows[:, :, :n_demo].mean(axis=1)
            kendall = np.array([kendalltau(a, b).statistic for a, b in zip(icl_attention,
                                                                           ft_attention)])
        for layer in range(len(simaou)):
            layers.append({"item": index, "layer": layer, "simaou": simaou[layer],
                           "simaou_random": simaou_random[layer], "simam_icl_ft": simam[layer],
                           "simam_icl_zsl": simam_zsl[layer], "kendall": kendall[layer]})
    items, layers = pd.DataFrame(items), pd.DataFrame(layers)
    ratio, denominator = rec2ftp(items["zsl_correct"], items["ft_correct"], items["icl_correct"])
    summary = {
        "learning_rate": lr, "validation_accuracy_by_lr": {str(k): v for k, v in
                                                           validation_scores.items()},
        "demonstrations": [list(d) for d in demos], "n_test": len(items),
        "n_validation": len(validation),
        "accuracy_zsl": float(items["zsl_correct"].mean()),
        "accuracy_icl": float(items["icl_correct"].mean()),
        "accuracy_ft": float(items["ft_correct"].mean()),
        "rec2ftp": ratio, "rec2ftp_denominator": denominator,
        "simaou": float(layers["simaou"].mean()),
        "simaou_random": float(layers["simaou_random"].mean()),
        "simam_icl_ft": float(layers["simam_icl_ft"].mean()),
        "simam_icl_zsl": float(layers["simam_icl_zsl"].mean()),
        "kendall": float(layers["kendall"].mean()),
        "items_skipped_simam": skipped["simam"], "items_skipped_kendall": skipped["kendall"],
    }
    if any(skipped.values()):
        log.warning("%s: tokens did not line up for %s of %d items (left out of those metrics)",
                    data.name, skipped, len(test))
    return items, layers, summary


def random_control(model: nn.Module, seed: int) -> nn.Module:
    """A randomly initialised model of the same architecture and size (eager attention)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    control = AutoModelForCausalLM.from_config(model.config, attn_implementation="eager")
    return control.eval()
