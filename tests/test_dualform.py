"""ICL as implicit finetuning: the dual-form identity, Rec2FTP, SimAOU, k/v-only finetuning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iclab.dualform import (TrainingTrace, compare_settings, dual_form, finetune_kv,
                            linear_attention, rec2ftp, sim_am, sim_aou, split_cell,
                            update_similarity)
from iclab.tasks import task_data


def test_dual_form_identity_on_random_matrices():
    rng = np.random.default_rng(0)
    d_in, d_k, d_v = 16, 8, 12
    w_k, w_v = rng.standard_normal((d_k, d_in)), rng.standard_normal((d_v, d_in))
    demos, query_tokens = rng.standard_normal((7, d_in)), rng.standard_normal((4, d_in))
    q = rng.standard_normal(d_k)
    full = linear_attention(w_k, w_v, np.vstack([demos, query_tokens]), q)
    w_zsl, delta_icl = dual_form(w_k, w_v, demos, query_tokens, q)
    np.testing.assert_allclose(full, w_zsl @ q + delta_icl @ q, rtol=1e-10)
    np.testing.assert_allclose(w_zsl @ q, linear_attention(w_k, w_v, query_tokens, q), rtol=1e-10)
    assert np.linalg.norm(delta_icl @ q) > 1e-3  # the demonstrations really update the output


def test_rec2ftp_by_hand():
    zsl = [False, False, False, False, True, True]
    ft = [True, True, True, False, True, False]
    icl = [True, False, True, True, True, True]
    # ZSL wrong & FT right: items 0, 1, 2; of these ICL right: 0, 2
    assert rec2ftp(zsl, ft, icl) == (pytest.approx(2 / 3), 3)
    ratio, n = rec2ftp([True], [True], [True])
    assert n == 0 and np.isnan(ratio)


def test_simaou_identical_updates_one_random_near_zero():
    rng = np.random.default_rng(1)
    zsl = rng.standard_normal((5, 256))
    icl = zsl + rng.standard_normal((5, 256))
    np.testing.assert_allclose(sim_aou(zsl, icl, icl), 1.0, atol=1e-12)
    icl_update = icl - zsl
    random_update = rng.standard_normal((5, 256))
    assert np.abs(update_similarity(icl_update, random_update)).max() < 0.25  # ~ 1/sqrt(256)
    assert abs(update_similarity(icl_update, random_update).mean()) < 0.1
    np.testing.assert_allclose(update_similarity(icl_update, 3 * icl_update), 1.0)


def test_simam_cosine_per_layer():
    a = np.array([[[1.0, 0.0], [0.5, 0.5]]])  # [layers=1, heads=2, Q=2]
    b = np.array([[[0.0, 1.0], [0.5, 0.5]]])
    assert sim_am(a, b) == pytest.approx([0.5])


def test_finetuning_changes_only_key_value_weights(tiny, tokenizer):
    arch, model, _ = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trace = TrainingTrace()
    tuned = finetune_kv(model, tokenizer, [("dog", "animal"), ("golf", "sport")], lr=0.5,
                        trace=trace)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), f"the original model changed: {name}"
    changed = {k for k, v in tuned.state_dict().items() if not torch.equal(v, before[k])}
    assert changed, "finetuning changed nothing"
    if arch == "llama":
        assert all(".k_proj." in k or ".v_proj." in k for k in changed)
    else:
        assert all(".attn.c_attn." in k for k in changed)
        d = model.config.n_embd
        for k in changed:  # the query third of the fused projection stays put
            assert torch.equal(tuned.state_dict()[k][..., :d], before[k][..., :d])
    expected_tokens = sum(len(tokenizer(f"Input: {x}\nOutput: {y}\n").input_ids)
                          for x, y in [("dog", "animal"), ("golf", "sport")])
    assert len(trace.tokens) == len(trace.kv_inputs) == expected_tokens


def test_split_cell_keeps_demos_validation_and_test_apart():
    data = task_data("remap", {}, "semantic")
    demos, validation, test = split_cell(data, 6, None, 10, seed=0)
    demo_words = {x for x, _ in demos}
    assert len(demos) == 6 and len(validation) == 10 and len(test) == len(data.test_pool)
    assert not demo_words & {it.x for it in validation}
    assert not demo_words & {it.x for _, it in test}
    assert sorted(y for _, y in demos).count("sport") == 2  # balanced over categories


def test_split_cell_custom_task_never_tests_a_demo_or_validation_item(tmp_path):
    import json

    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps({"input": f"w{i}", "output": "yes" if i % 2 else "no",
                                          "choices": ["yes", "no"]}) for i in range(10)))
    data = task_data("mine", {"type": "custom", "path": str(path)})
    demos, validation, test = split_cell(data, 4, None, 3, seed=0)
    used = {x for x, _ in demos} | {it.x for it in validation}
    assert len(test) == 3 and not used & {it.x for _, it in test}


def test_compare_settings_runs_end_to_end(tiny, tokenizer):
    _, model, _ = tiny
    items, layers, summary = compare_settings(model, tokenizer, task_data("remap", {}, "symbols"),
                                              3, 4, 3, [0.01], seed=0)
    assert len(items) == 4 and set(layers["layer"]) == {0, 1}
    assert summary["learning_rate"] == 0.01
    assert layers["simaou"].between(-1, 1).all() and layers["kendall"].notna().all()


def test_learning_rate_rule(monkeypatch):
    """Best validation accuracy wins; ties go to the larger rate."""
    import iclab.dualform as dualform

    accuracy = {1e-4: 0.5, 1e-3: 0.75, 1e-2: 0.75, 1e-1: 0.25}
    monkeypatch.setattr(dualform, "finetune_kv", lambda model, tok, demos, lr: lr)
    monkeypatch.setattr(dualform, "choice_accuracy", lambda lr, tok, items: accuracy[lr])
    lr, scores = dualform.select_learning_rate(None, None, (), [], list(accuracy))
    assert lr == 1e-2 and scores == accuracy
