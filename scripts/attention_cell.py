"""Rule attention_cell: AQ, entropy and focus per head and example with uniform-attention and
random-token-set baselines, normalised entropy, first-token share; rows of the top heads."""
from iclab.rulelog import route_to_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
log = route_to_log(sm)

import pandas as pd

from iclab.attention import prompt_attention
from iclab.attention_metrics import head_metrics
from iclab.cells import cell_examples
from iclab.io import write_table
from iclab.models import saved_model_info
from iclab.runtime import create_runtime

wc, settings, runtime_cfg = sm.wildcards, sm.params.attention, sm.params.runtime
_, _, tokenizer = saved_model_info(sm.input.card)
examples = cell_examples(wc, sm.params.task_settings, settings["n_test"])
runtime = create_runtime(sm.input.onnx, runtime_cfg["provider"], sm.threads, runtime_cfg["fp16"])
metric_rows, kept = [], []
for ex, ids, relevant, attention in prompt_attention(runtime, tokenizer, examples,
                                                     runtime_cfg["token_budget"],
                                                     runtime_cfg["max_batch"]):
    metrics = head_metrics(attention, relevant, seed=ex.item)  # random set seeded by item
    layers, heads = metrics["aq"].shape
    for layer in range(layers):
        for head in range(heads):
            metric_rows.append({"item": ex.item, "layer": layer, "head": head,
                                "relevant_tokens": int(relevant.sum()), "prompt_tokens": len(ids),
                                **{name: float(values[layer, head])
                                   for name, values in metrics.items()}})
    if not kept:  # the first example's rows, kept for the figure of example attention rows
        kept = [(ex, ids, relevant, attention)]
metrics = pd.DataFrame(metric_rows)
metrics["provider"] = runtime.provider
top = (metrics.groupby(["layer", "head"])["aq"].mean().sort_values(ascending=False)
       .head(settings["top_heads"]).index)
ex, ids, relevant, attention = kept[0]
tokens = tokenizer.convert_ids_to_tokens(ids)
rows = pd.DataFrame([{"item": ex.item, "layer": layer, "head": head, "position": t,
                      "token": tokens[t], "relevant": bool(relevant[t]),
                      "weight": float(attention[layer, head, t])}
                     for layer, head in top for t in range(len(ids))])
write_table(sm.output.metrics, metrics)
write_table(sm.output.rows, rows)
log.info("top heads by AQ: %s", list(top))
