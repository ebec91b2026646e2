"""Per-head ablation: batched sweep = separate PyTorch runs; gradient importance = finite
differences; pruning never re-adds a head."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from iclab.ablation import (Condition, effects, evaluate_masks, gradient_importance,
                            importance_order, layer_conditions, normalize_per_layer,
                            pruning_masks, random_order, sweep)
from iclab.export import TargetLogProbs
from iclab.models import HeadLayout, head_layout
from iclab.runtime import create_runtime
from iclab.scoring import batch_feeds, encode
from iclab.tasks import build_examples


def single_example_logprobs(model, tokenizer, example, mask: np.ndarray):
    """One PyTorch forward at batch size 1 with one condition's head mask: gold log-probs."""
    enc = encode(tokenizer, example.prompt, example.target)
    positions = [list(range(len(enc.prompt_ids) - 1, len(enc.input_ids)))]
    feeds = batch_feeds([enc.input_ids], positions, 0, mask[None])
    with torch.no_grad():
        out = TargetLogProbs(model)(*(torch.from_numpy(feeds[k]) for k in
                                      ("input_ids", "attention_mask", "head_mask", "target_pos")))
    lp = out[0, torch.arange(len(enc.target_ids)), torch.tensor(enc.target_ids)]
    correct = bool((out[0].argmax(-1) == torch.tensor(enc.target_ids)).all())
    return float(lp.sum()), correct


def test_batched_sweep_equals_separate_pytorch_runs(tiny, tokenizer):
    _, model, path = tiny
    layout = head_layout(model.config)
    examples = build_examples("copy", 3, 2, seed=4)
    conditions = [Condition()] + layer_conditions(layout, 1)
    results = sweep(create_runtime(path, "cpu", 1), tokenizer, examples, conditions, layout,
                    token_budget=4096, max_batch=7, progress=False)
    assert len(results) == len(conditions) * len(examples)
    for row in results.itertuples():
        condition = conditions[[c.name for c in conditions].index(row.condition)]
        example = next(e for e in examples if e.item == row.item)
        want_lp, want_correct = single_example_logprobs(model, tokenizer, example,
                                                        condition.mask(layout))
        assert row.gold_logprob == pytest.approx(want_lp, abs=1e-3)
        assert row.correct == want_correct
    by_condition = results.groupby("condition")["gold_logprob"].mean()
    assert by_condition.nunique() == len(conditions), "every ablation changes the outputs"


def test_condition_masks():
    layout = HeadLayout(3, 4, 8)
    assert Condition().mask(layout).min() == 1.0
    head = Condition(1, 2).mask(layout)
    assert head.sum() == 11 and head[1, 2] == 0
    layer = Condition(2).mask(layout)
    assert layer[2].sum() == 0 and layer[:2].min() == 1
    assert [c.name for c in layer_conditions(layout, 0)] == ["L0H0", "L0H1", "L0H2", "L0H3", "L0"]
    with pytest.raises(ValueError):
        layer_conditions(layout, 3)


def test_gradient_importance_equals_finite_differences(tiny, tokenizer):
    _, model, _ = tiny
    model = model.double()
    try:
        layout = head_layout(model.config)
        examples = build_examples("copy", 3, 1, seed=2)
        importance = gradient_importance(model, tokenizer, examples, layout, batch_size=2,
                                         normalize=False)
        # transformers keeps softmax and RMSNorm in fp32 even in a float64 model, so the
        # central difference carries fp32 noise: a moderate step, tolerance to match.
        eps = 1e-3
        finite = np.zeros_like(importance)
        for ex in examples:
            for layer in range(layout.n_layers):
                for head in range(layout.n_heads):
                    plus, minus = np.ones((2, layout.n_layers, layout.n_heads))
                    plus[layer, head] += eps
                    minus[layer, head] -= eps
                    loss_plus = -single_example_logprobs(model, tokenizer, ex, plus)[0]
                    loss_minus = -single_example_logprobs(model, tokenizer, ex, minus)[0]
                    finite[layer, head] += abs(loss_plus - loss_minus) / (2 * eps)
        finite /= len(examples)
        np.testing.assert_allclose(importance, finite, rtol=1e-2, atol=2e-3)
        assert np.corrcoef(importance.ravel(), finite.ravel())[0, 1] > 0.999
        normalized = normalize_per_layer(importance)
        np.testing.assert_allclose(np.linalg.norm(normalized, axis=1), 1.0)
    finally:
        model.float()


def test_pruning_never_re_adds_a_head():
    layout = HeadLayout(4, 5, 8)
    fractions = np.arange(0.0, 1.0, 0.1)
    for order in (random_order(layout, 0), random_order(layout, 1),
                  importance_order(np.random.default_rng(3).random((4, 5)))):
        masks = pruning_masks(order, layout, fractions)
        removed = [(m == 0).sum() for m in masks]
        assert removed == [round(f * 20) for f in fractions]
        assert np.all(np.diff(masks, axis=0) <= 0), "a removed head came back"
    with pytest.raises(ValueError, match="every head exactly once"):
        pruning_masks([(0, 0)] * 20, layout, fractions)


def test_importance_order_is_least_important_first():
    importance = np.array([[0.3, 0.1], [0.2, 0.4]])
    assert importance_order(importance) == [(0, 1), (1, 0), (0, 0), (1, 1)]


def test_evaluate_masks_rows_are_independent(tiny, tokenizer):
    _, model, path = tiny
    layout = head_layout(model.config)
    examples = build_examples("copy", 2, 1, seed=0)
    masks = np.ones((3, layout.n_layers, layout.n_heads), dtype=np.float32)
    masks[1, 0, 0] = 0
    scored = evaluate_masks(create_runtime(path, "cpu", 1), tokenizer, examples, masks, layout,
                            4096, 4, progress=False)
    first, second, third = (scored[scored["mask"] == m]["gold_logprob"].to_numpy() for m in range(3))
    np.testing.assert_array_equal(first, third)
    assert np.abs(first - second).max() > 1e-4


def test_effects_by_hand():
    rows = []
    for item, (base_ok, base_lp, abl_ok, abl_lp) in enumerate(
            [(True, -1.0, False, -3.0), (True, -2.0, True, -2.5), (False, -4.0, False, -6.0)]):
        rows.append({"condition": "baseline", "kind": "baseline", "layer": -1, "head": -1,
                     "item": item, "correct": base_ok, "gold_logprob": base_lp})
        rows.append({"condition": "L0H1", "kind": "head", "layer": 0, "head": 1,
                     "item": item, "correct": abl_ok, "gold_logprob": abl_lp})
    table = effects(pd.DataFrame(rows))
    row = table.iloc[0]
    assert row["delta_accuracy"] == pytest.approx(-1 / 3)
    assert row["delta_logprob"] == pytest.approx((-2.0 - 0.5 - 2.0) / 3)
    assert row["delta_logprob_high"] < 0 and row["hurts"] and not row["helps"]
