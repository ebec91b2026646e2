"""Rule attention_cell: AQ, entropy and focus per head and example with uniform-attention and
random-token-set baselines, normalised entropy, first-token share; rows of the top heads."""
from iclab.rulelog import route_to_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
log = route_to_log(sm)

import pandas as pd

from iclab.attention import prompt_attention
from iclab.attention_metrics import head_metrics
from iclab.attention_tables import attention_rows, metric_rows, top_heads
from iclab.cells import Cell
from iclab.io import write_table
from iclab.models import saved_model_info
from iclab.runtime import create_runtime

cell, settings, runtime_cfg = Cell.of(sm.wildcards), sm.params.attention, sm.params.runtime
_, _, tokenizer = saved_model_info(sm.input.card)
examples = cell.examples(sm.params.task_settings, settings["n_test"])
runtime = create_runtime(sm.input.onnx, runtime_cfg["provider"], sm.threads, runtime_cfg["fp16"])
rows, kept = [], None
for ex, ids, relevant, attention in prompt_attention(runtime, tokenizer, examples,
                                                     runtime_cfg["token_budget"],
                                                     runtime_cfg["max_batch"]):
    metrics = head_metrics(attention, relevant, seed=ex.item)  # random set seeded by item
    rows += metric_rows(ex.item, len(ids), relevant, metrics)
    kept = kept or (ex, ids, relevant, attention)  # the first example: the figure's rows
metrics = pd.DataFrame(rows)
metrics["provider"] = runtime.provider
top = top_heads(metrics, settings["top_heads"])
ex, ids, relevant, attention = kept
write_table(sm.output.metrics, cell.tag(metrics))
write_table(sm.output.rows, cell.tag(attention_rows(ex.item, tokenizer.convert_ids_to_tokens(ids),
                                                    relevant, attention, top)))
log.info("top heads by AQ: %s", top)
