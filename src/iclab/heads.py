"""Per-head masking (and replacement) at the output projection's input (TransformerLens' `hook_z`).

transformers v5 has no `head_mask` argument, so a forward pre-hook on each layer's output
projection (Llama `o_proj`, GPT-2 `c_proj`) multiplies head h of layer l by
`head_mask[batch, l, h]`. Zero removes the head for that batch row only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from iclab.architecture import architecture
from iclab.models import HeadLayout, head_layout


def output_projections(model: nn.Module) -> list[nn.Module]:
    """The per-layer attention output projections, in layer order."""
    family = architecture(model)
    return [family.projection(block) for block in family.block_list(model)]


@contextmanager
def projection_masked(projection: nn.Module, mask: torch.Tensor, layout: HeadLayout,
                      patch: torch.Tensor | None = None) -> Iterator[None]:
    """Within the block, scale the input `hook_z` of one output projection per head by
    `mask[batch, head]`, then add `patch[batch, head, head_dim]` at every position: with mask 0
    the head outputs the patch (zero ablation: a zero patch; mean ablation: the head's mean)."""
    def scale(module, args):
        hook_z = args[0]  # [batch, pos, heads * head_dim]
        batch, pos, _ = hook_z.shape
        per_head = hook_z.view(batch, pos, layout.n_heads, layout.head_dim)
        scaled = per_head * mask.to(hook_z.dtype)[:, None, :, None]
        if patch is not None:
            scaled = scaled + patch.to(hook_z.dtype)[:, None]
        return (scaled.reshape(batch, pos, -1),) + tuple(args[1:])

    handle = projection.register_forward_pre_hook(scale)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def head_mask_applied(model: nn.Module, head_mask: torch.Tensor) -> Iterator[None]:
    """Within the block, scale each head's output `hook_z` by `head_mask[batch, layer, head]`."""
    layout = head_layout(model.config)
    with ExitStack() as stack:
        for layer, projection in enumerate(output_projections(model)):
            stack.enter_context(projection_masked(projection, head_mask[:, layer], layout))
        yield
