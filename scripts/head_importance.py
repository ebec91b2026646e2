"""Rule head_importance: gradient importance per head (PyTorch, one backward pass per batch)."""
from iclab.rulelog import route_to_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
log = route_to_log(sm)

from pathlib import Path

import pandas as pd
import torch

from iclab.ablation import gradient_importance, normalize_per_layer
from iclab.io import write_table
from iclab.models import head_layout, load_saved
from iclab.tasks import build_examples

wc, ablation = sm.wildcards, sm.params.ablation
torch.set_num_threads(sm.threads)
model, tokenizer = load_saved(Path(sm.input.card).parent)
layout = head_layout(model.config)
examples = build_examples(wc.task, ablation["n_test"], int(wc.shots), int(wc.seed),
                          variant=wc.variant, settings=sm.params.task_settings)
raw = gradient_importance(model, tokenizer, examples, layout, ablation["importance_batch"],
                          normalize=False)
normalized = normalize_per_layer(raw)
table = pd.DataFrame([{"layer": l, "head": h, "importance": float(normalized[l, h]),
                       "importance_raw": float(raw[l, h])}
                      for l in range(layout.n_layers) for h in range(layout.n_heads)])
write_table(sm.output[0], table)
log.info("most important heads:\n%s",
         table.sort_values("importance_raw", ascending=False).head(10).to_string())
