"""Teacher-forced `correct` agrees with real greedy decoding; metrics by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iclab.models import head_layout
from iclab.runtime import create_runtime
from iclab.scoring import (Encoded, TokenizationError, encode, greedy_decode, score_examples,
                           teacher_forced)
from iclab.tasks import build_examples


def hf_greedy(model, tokenizer, prompt: str, new_tokens: int) -> list[int]:
    ids = torch.tensor([tokenizer(prompt).input_ids])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    return out[0, ids.shape[1]:].tolist()


def test_greedy_decode_matches_generate(tiny, tokenizer):
    _, model, path = tiny
    runtime = create_runtime(path, "cpu", 1)
    examples = build_examples("copy", 5, 2, seed=0)
    prompts = [tokenizer(e.prompt).input_ids for e in examples]
    ours = greedy_decode(runtime, tokenizer, prompts, head_layout(model.config), 6, 4096, 8,
                         stop="\x00never")
    want = [hf_greedy(model, tokenizer, ex.prompt, 6) for ex in examples]
    for text, tokens in zip(ours, want):
        assert text == tokenizer.decode(tokens)
    # Known prefixes and wrong first guesses must not change the result (Jacobi fixed point).
    rng = np.random.default_rng(0)
    guesses = [rng.integers(3, len(tokenizer), size=4).tolist() for _ in examples]
    resumed = greedy_decode(runtime, tokenizer, prompts, head_layout(model.config), 6, 4096, 8,
                            stop="\x00never", prefixes=[t[:2] for t in want], guesses=guesses)
    assert resumed == ours


def test_teacher_forced_correct_equals_generate(tiny, tokenizer):
    """Gold = the model's own greedy tokens scores correct; one changed token does not."""
    _, model, path = tiny
    runtime = create_runtime(path, "cpu", 1)
    encoded, expected = [], []
    for i, ex in enumerate(build_examples("copy", 6, 2, seed=0)):
        prompt_ids = tokenizer(ex.prompt).input_ids
        greedy = hf_greedy(model, tokenizer, ex.prompt, 5)
        if i % 2:  # change one answer token: no longer what greedy decoding emits
            j = i % 5
            greedy[j] = (greedy[j] + 1) % len(tokenizer)
        encoded.append(Encoded(prompt_ids, greedy))
        expected.append(i % 2 == 0)
    scored = teacher_forced(runtime, encoded, head_layout(model.config), 0, 4096, 8,
                            progress=False)
    assert scored["correct"].tolist() == expected


def test_metrics_by_hand(tiny, tokenizer):
    """gold_logprob and first_token_rank recomputed directly from the PyTorch logits."""
    _, model, path = tiny
    runtime = create_runtime(path, "cpu", 1)
    ex = build_examples("copy", 1, 1, seed=5)[0]
    row = score_examples(runtime, tokenizer, [ex], head_layout(model.config), 4096, 8,
                         progress=False).iloc[0]
    enc = encode(tokenizer, ex.prompt, ex.target)
    with torch.no_grad():
        logits = model(torch.tensor([enc.prompt_ids + enc.target_ids])).logits[0]
    logprobs = torch.log_softmax(logits, -1).numpy()
    p = len(enc.prompt_ids)
    gold = [logprobs[p - 1 + j, t] for j, t in enumerate(enc.target_ids)]
    assert row.gold_logprob == pytest.approx(sum(gold), abs=1e-3)
    assert row.first_token_rank == 1 + int((logprobs[p - 1] > gold[0]).sum())
    assert row.provider == "CPUExecutionProvider"
    assert row.prompt == ex.prompt and row.target == ex.target


def test_tokenization_must_split_at_the_prompt(tokenizer):
    class Merging:
        def __call__(self, text):
            class Out:
                input_ids = [len(text)]
            return Out()

    with pytest.raises(TokenizationError):
        encode(Merging(), "Output:", " a")
    enc = encode(tokenizer, "Output:", " a, b")
    assert tokenizer.decode(enc.target_ids) == " a, b"
    assert np.array_equal(enc.input_ids, enc.prompt_ids + enc.target_ids[:-1])


def test_candidate_scores_match_pytorch(tiny, tokenizer):
    """Every candidate's log P(" label" | prompt) equals a direct PyTorch computation."""
    _, model, path = tiny
    runtime = create_runtime(path, "cpu", 1)
    examples = build_examples("remap", 3, 3, seed=0, variant="symbols")
    rows = score_examples(runtime, tokenizer, examples, head_layout(model.config), 4096, 8,
                          temperature=0.5, progress=False)
    for ex, row in zip(examples, rows.itertuples()):
        for choice, score in zip(ex.choices, row.choice_logprobs):
            enc = encode(tokenizer, ex.prompt, f" {choice}")
            with torch.no_grad():
                logits = model(torch.tensor([enc.prompt_ids + enc.target_ids])).logits[0]
            lp = torch.log_softmax(logits, -1)
            p = len(enc.prompt_ids)
            want = sum(lp[p - 1 + j, t].item() for j, t in enumerate(enc.target_ids))
            assert score == pytest.approx(want, abs=1e-3)
        assert row.choice_prediction == ex.choices[int(np.argmax(row.choice_logprobs))]
        assert row.choice_correct == (row.choice_prediction == ex.y)
        gold = row.choice_logprobs[ex.choices.index(ex.y)]
        assert row.gold_logprob == pytest.approx(gold)
        scaled = np.asarray(row.choice_logprobs) / 0.5
        assert row.contrastive_loss == pytest.approx(
            -(scaled[ex.choices.index(ex.y)] - np.log(np.exp(scaled).sum())), abs=1e-6)
