"""Rule export_onnx: export the head-mask graph, check parity with PyTorch, fail past tolerance."""
from iclab.rulelog import route_to_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
log = route_to_log(sm)

from pathlib import Path

import torch

from iclab.export import export_onnx, parity_check, require_parity
from iclab.io import atomic_path, sha256_file, write_json
from iclab.models import load_saved
from iclab.tasks import build_examples

settings = sm.params.export
torch.set_num_threads(sm.threads)
torch.manual_seed(0)

model_dir = Path(sm.input.card).parent
model, tokenizer = load_saved(model_dir)
with atomic_path(sm.output.onnx) as tmp:
    export_onnx(model, tmp, opset=settings["opset"])
    examples = build_examples("copy", settings["parity_examples"], shots=3, seed=0)
    report = parity_check(model, tokenizer, tmp, [(e.prompt, e.target) for e in examples],
                          sm.threads, settings["parity_tolerance"])
    report["onnx_sha256"] = sha256_file(tmp)
    log.info("parity: %s", report)
    require_parity(report, "ONNX log-prob", sm.wildcards.model,
                   max(report["max_abs_diff_unablated"], report["max_abs_diff_ablated"]))
write_json(sm.output.parity, report)
