"""Rule ablation_shard: the baseline, or every head and the whole of one layer, ablated in batch."""
from iclab.rulelog import route_to_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
log = route_to_log(sm)

from pathlib import Path

from transformers import AutoTokenizer

from iclab.ablation import Condition, layer_conditions, sweep
from iclab.io import read_json, write_table
from iclab.models import HeadLayout
from iclab.runtime import create_runtime
from iclab.tasks import build_examples

wc, ablation, runtime_cfg = sm.wildcards, sm.params.ablation, sm.params.runtime
card = read_json(sm.input.card)
layout = HeadLayout(card["layers"], card["heads"], card["head_dim"])
tokenizer = AutoTokenizer.from_pretrained(Path(sm.input.card).parent)
examples = build_examples(wc.task, ablation["n_test"], int(wc.shots), int(wc.seed),
                          variant=wc.variant, settings=sm.params.task_settings)
if wc.shard == "baseline":
    conditions = [Condition()]
else:
    first, last = (int(v) for v in wc.shard.removeprefix("layers").split("-"))
    conditions = [c for layer in range(first, last + 1) for c in layer_conditions(layout, layer)]
runtime = create_runtime(sm.input.onnx, runtime_cfg["provider"], sm.threads, runtime_cfg["fp16"])
results = sweep(runtime, tokenizer, examples, conditions, layout, runtime_cfg["token_budget"],
                runtime_cfg["max_batch"])
results["provider"] = runtime.provider
write_table(sm.output[0], results)
log.info("%s: %d conditions x %d examples on %s", wc.shard, len(conditions), len(examples),
         runtime.provider)
