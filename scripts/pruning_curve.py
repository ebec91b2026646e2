"""Rule pruning_curve: accuracy (Wilson 95%) as heads are removed 10% at a time, by importance and
at random, on the cell's scoring half of items (importance was ranked on the other half)."""
from iclab.rulelog import route_to_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
log = route_to_log(sm)

import numpy as np
import pandas as pd

from iclab.ablation import cell_halves, evaluate_masks, importance_order, pruning_masks, random_order
from iclab.ablation_tables import item_ids
from iclab.io import write_table
from iclab.layered import create_layered_runtime
from iclab.metrics import wilson_interval
from iclab.models import saved_model_info

wc, runtime_cfg = sm.wildcards, sm.params.runtime
card, layout, tokenizer = saved_model_info(sm.input.card)
_, examples = cell_halves(wc, sm.params.task_settings, **sm.params.cell)  # the sweep's half
importance = pd.read_parquet(sm.input.importance).pivot(index="layer", columns="head",
                                                        values="importance").to_numpy()
fractions = np.round(np.arange(0.0, 1.0, sm.params.step), 6).tolist()
orders = [("importance", -1, importance_order(importance))]
orders += [("random", seed, random_order(layout, seed))
           for seed in range(sm.params.random_orders)]
masks = np.concatenate([pruning_masks(order, layout, fractions) for _, _, order in orders])
runtime = create_layered_runtime(sm.input.graphs, runtime_cfg["provider"], sm.threads,
                                 runtime_cfg["fp16"])
scored = evaluate_masks(runtime, tokenizer, examples, masks, layout, runtime_cfg["token_budget"],
                        runtime_cfg["max_batch"])
summary = scored.groupby("mask").agg(n_correct=("correct", "sum"), accuracy=("correct", "mean"),
                                     mean_gold_logprob=("gold_logprob", "mean")).reset_index()
summary[["ci_low", "ci_high"]] = pd.DataFrame(
    [wilson_interval(k, len(examples)) for k in summary["n_correct"]], index=summary.index)
steps = [(name, seed, f, int(round(f * layout.n_layers * layout.n_heads)))
         for name, seed, _ in orders for f in fractions]
summary[["order", "order_seed", "fraction_removed", "heads_removed"]] = pd.DataFrame(
    steps, index=summary.index)
summary["n"] = len(examples)
summary["items"] = item_ids(ex.item for ex in examples)
summary["provider"] = runtime.provider
write_table(sm.output[0], summary.drop(columns="mask"))
log.info("\n%s", summary.drop(columns="items").to_string())
