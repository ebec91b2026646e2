"""Rule export_layered: one graph per stage (embedding, each block, LM head) for sweeps that reuse
the baseline's lower layers and one broadcast prefix cache; parity with PyTorch."""
from iclab.rulelog import route_to_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
log = route_to_log(sm)

from pathlib import Path

import torch

from iclab.export import require_parity
from iclab.export_layered import export_layered, layered_parity_check
from iclab.io import sha256_file, sha256_json, write_json
from iclab.models import load_saved
from iclab.scoring import encode, pad_token_id
from iclab.tasks import build_examples

settings = sm.params.export
torch.set_num_threads(sm.threads)
torch.manual_seed(0)
model, tokenizer = load_saved(Path(sm.input.card).parent)
out_dir = Path(sm.output.graphs)
manifest = export_layered(model, out_dir, opset=settings["opset"])
examples = build_examples("copy", settings["parity_examples"], shots=3, seed=0,
                          demonstrations="shared")  # exercises the broadcast prefix cache
encoded = [encode(tokenizer, e.prompt, e.target) for e in examples]
report = layered_parity_check(model, encoded, pad_token_id(tokenizer), out_dir, sm.threads,
                              settings["parity_tolerance"])
stages = [manifest["embed"], *manifest["blocks"], manifest["head"]]
report["onnx_sha256"] = sha256_json({name: sha256_file(out_dir / name) for name in stages})
log.info("layered parity: %s", report)
require_parity(report, "layered graphs' (gold log-prob, first argmax, head patch)",
               sm.wildcards.model, max(report["max_abs_diff_gold_logprob"],
                                       report["max_abs_diff_patched_logprob"]))
write_json(sm.output.parity, report)
