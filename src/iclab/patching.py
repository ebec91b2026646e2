"""Head-output interventions in PyTorch, at `hook_z` (a head's output before the output
projection, TransformerLens' name): record it, replace it at chosen query positions, map it to
the residual stream, add a vector to the residual stream.

This is the reference the batched ONNX sweeps (`iclab.mediation`) are checked against, and
where what needs gradients (attribution patching) or residual edits (function vectors) runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import numpy as np
import torch
from torch import nn

from iclab.architecture import architecture
from iclab.heads import output_projections
from iclab.models import head_layout
from iclab.scoring import Encoded


@contextmanager
def hook_z_recorded(model: nn.Module, positions: torch.Tensor) -> Iterator[list[torch.Tensor]]:
    """Within the block, append each layer's `hook_z[batch, head, head_dim]` at query position
    `positions[batch]` to the yielded list (layer order). Values only: the copies are not what
    the projection reads, so gradients do not reach them (`iclab.attribution` records the
    projection's input itself)."""
    with hook_z_at(model, (torch.arange(len(positions)), positions)) as recorded:
        yield recorded


@contextmanager
def hook_z_at(model: nn.Module, index: tuple[torch.Tensor, torch.Tensor]
              ) -> Iterator[list[torch.Tensor]]:
    """Within the block, append each layer's `hook_z[n, head, head_dim]` at the n (row,
    position) pairs `index` to the yielded list (layer order)."""
    layout = head_layout(model.config)
    recorded: list[torch.Tensor] = []

    def record(module, args):
        hook_z = args[0]  # [batch, pos, heads * head_dim]
        recorded.append(hook_z[index].view(-1, layout.n_heads, layout.head_dim))

    with ExitStack() as stack:
        for projection in output_projections(model):
            stack.callback(projection.register_forward_pre_hook(record).remove)
        yield recorded


@contextmanager
def hook_z_replaced(model: nn.Module, replacement: torch.Tensor, where: torch.Tensor,
                    positions: torch.Tensor | None = None) -> Iterator[None]:
    """Within the block, head h of layer l in row b outputs `replacement[b, l, h]` (`[B, L, H,
    D]`) instead of its own `hook_z` wherever `where[b, l, h]` is true, at query position
    `positions[b]` only (None: at every position)."""
    layout = head_layout(model.config)

    def replace(layer: int):
        def hook(module, args):
            hook_z = args[0]
            batch, length, _ = hook_z.shape
            per_head = hook_z.view(batch, length, layout.n_heads, layout.head_dim)
            chosen = where[:, layer].to(torch.bool)[:, None, :, None]  # [B, 1, H, 1]
            if positions is not None:
                at = torch.zeros(batch, length, dtype=torch.bool, device=hook_z.device)
                at[torch.arange(batch), positions] = True
                chosen = chosen & at[:, :, None, None]
            value = replacement[:, layer].to(hook_z.dtype)[:, None]  # [B, 1, H, D]
            patched = torch.where(chosen, value, per_head)
            return (patched.reshape(batch, length, -1),) + tuple(args[1:])
        return hook

    with ExitStack() as stack:
        for layer, projection in enumerate(output_projections(model)):
            stack.callback(projection.register_forward_pre_hook(replace(layer)).remove)
        yield


@contextmanager
def residual_added(model: nn.Module, layer: int, vectors: torch.Tensor,
                   positions: torch.Tensor) -> Iterator[None]:
    """Within the block, add `vectors[batch, d_model]` to the residual stream entering block
    `layer` at position `positions[batch]` of each row (a function vector's intervention)."""
    block = architecture(model).block_list(model)[layer]
    rows = torch.arange(len(positions))

    def add(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        edited = hidden.clone()
        edited[rows, positions] = edited[rows, positions] + vectors.to(hidden.dtype)
        if args:
            return (edited,) + tuple(args[1:]), kwargs
        return args, {**kwargs, "hidden_states": edited}

    handle = block.register_forward_pre_hook(add, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def output_weights(model: nn.Module) -> list[torch.Tensor]:
    """Per layer, the output projection as `W_O[heads * head_dim, d_model]` (input-major, as
    GPT-2's Conv1D stores it; Llama's Linear is transposed)."""
    weights = []
    for projection in output_projections(model):
        weight = projection.weight
        weights.append(weight.T if isinstance(projection, nn.Linear) else weight)
    return weights


def head_contributions(model: nn.Module, hook_z: np.ndarray) -> np.ndarray:
    """What each head writes into the residual stream, `[..., L, H, d_model]`, for head outputs
    `hook_z[..., L, H, D]` (its slice of the output projection; the projection's bias, shared
    by all heads, is left out)."""
    layout = head_layout(model.config)
    out = []
    with torch.no_grad():
        for layer, weight in enumerate(output_weights(model)):
            per_head = weight.detach().float().view(layout.n_heads, layout.head_dim, -1)
            z = torch.as_tensor(hook_z[..., layer, :, :], dtype=torch.float32)
            out.append(torch.einsum("...hd,hdm->...hm", z, per_head).numpy())
    return np.stack(out, axis=-3)


def padded_prompts(rows: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(rows), length), dtype=torch.int64)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
    return ids, mask


def last_prompt_hook_z(model: nn.Module, encoded: Sequence[Encoded], pad_id: int,
                       batch_size: int = 16) -> np.ndarray:
    """`hook_z[row, layer, head, head_dim]` at each row's last prompt token (where the answer's
    first token is predicted), fp32."""
    out = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        ids, mask = padded_prompts([e.prompt_ids for e in chunk], pad_id)
        positions = torch.tensor([len(e.prompt_ids) - 1 for e in chunk])
        with torch.no_grad(), hook_z_recorded(model, positions) as recorded:
            model(input_ids=ids, attention_mask=mask)
        out.append(torch.stack(recorded, dim=1).float().numpy())
    return np.concatenate(out)


def mean_hook_z(model: nn.Module, encoded: Sequence[Encoded], pad_id: int,
                batch_size: int = 16) -> np.ndarray:
    """Each head's mean output `[layer, head, head_dim]` over every real prompt token of
    `encoded` (the reference of mean ablation)."""
    layout = head_layout(model.config)
    total = np.zeros((layout.n_layers, layout.n_heads, layout.head_dim))
    tokens = 0
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        ids, mask = padded_prompts([e.prompt_ids for e in chunk], pad_id)
        positions = mask.nonzero(as_tuple=True)  # (row, position) of every real token
        with torch.no_grad(), hook_z_at(model, positions) as recorded:
            model(input_ids=ids, attention_mask=mask)
        total += torch.stack([z.double().sum(0) for z in recorded]).numpy()
        tokens += int(mask.sum())
    return (total / tokens).astype(np.float32)


def patched_first_token_probs(model: nn.Module, encoded: Sequence[Encoded], pad_id: int,
                              layer: int, head: int, vectors: np.ndarray) -> np.ndarray:
    """P(first answer token) at the last prompt token of each row with head (`layer`, `head`)'s
    output there replaced by `vectors[row, D]`: the per-head reference loop (one forward per
    head, as Todd et al.'s code), batch = the rows."""
    layout = head_layout(model.config)
    ids, mask = padded_prompts([e.prompt_ids for e in encoded], pad_id)
    positions = torch.tensor([len(e.prompt_ids) - 1 for e in encoded])
    replacement = torch.zeros(len(encoded), layout.n_layers, layout.n_heads, layout.head_dim)
    replacement[:, layer, head] = torch.as_tensor(vectors, dtype=torch.float32)
    where = torch.zeros(len(encoded), layout.n_layers, layout.n_heads, dtype=torch.bool)
    where[:, layer, head] = True
    with torch.no_grad(), hook_z_replaced(model, replacement, where, positions):
        logits = model(input_ids=ids, attention_mask=mask).logits
    probs = torch.softmax(logits[torch.arange(len(encoded)), positions].float(), dim=-1)
    first = torch.tensor([e.target_ids[0] for e in encoded])
    return probs[torch.arange(len(encoded)), first].numpy()
