"""Rule provenance: one metadata record per result table, and the table of them for the report."""
from iclab.rulelog import route_to_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
log = route_to_log(sm)

from pathlib import Path

import pandas as pd

from iclab.io import read_json, sha256_file, write_json, write_table
from iclab.provenance import config_hash, machine, package_versions, providers_used, seeds

config = dict(sm.config)
GRAPH_OF_REPORT = {"parity.json": "model", "attention_parity.json": "attention"}
sources = [Path(p) for p in sm.input.sources]


def model_record(name: str) -> dict:
    """Hashes of a model's weights and graphs, and the providers its inference jobs used."""
    card = read_json(f"resources/models/{name}/model.json")
    graphs = {GRAPH_OF_REPORT[p.name]: read_json(p)["onnx_sha256"]  # hashed at export
              for p in sources if p.parts[:3] == ("resources", "onnx", name)}
    outputs = [p for p in sources if p.parts[0] == "results" and p.parts[2] == name]
    return {"source": card.get("source"), "model_sha256": card["sha256"],
            "onnx_sha256": graphs, "providers": providers_used(outputs)}


run = {
    "config_sha256": config_hash(config),
    "seeds": seeds(config),
    "models": {spec["name"]: model_record(spec["name"]) for spec in config["models"]},
    "packages": package_versions(),
    "machine": machine(),
}
rows = []
for table_path, sidecar in zip(sm.input.tables, sm.output.sidecars):
    record = {"table": Path(table_path).name, "sha256": sha256_file(table_path),
              "rows": len(pd.read_csv(table_path)), **run}
    write_json(sidecar, record)
    rows.append({
        "table": record["table"], "rows": record["rows"], "sha256": record["sha256"],
        "config_sha256": run["config_sha256"],
        "model_sha256": "; ".join(f"{m}={r['model_sha256'][:12]}" for m, r in run["models"].items()),
        "onnx_sha256": "; ".join(f"{m}/{g}={h[:12]}" for m, r in run["models"].items()
                                 for g, h in r["onnx_sha256"].items()),
        "providers": "; ".join(f"{m}={'+'.join(r['providers'])}" for m, r in run["models"].items()),
        "seeds": "; ".join(f"{k}={v}" for k, v in run["seeds"].items()),
        "packages": "; ".join(f"{k}={v}" for k, v in run["packages"].items()),
    })
write_table(sm.output.table, pd.DataFrame(rows))
log.info("provenance of %d tables; providers %s", len(rows),
         {m: r["providers"] for m, r in run["models"].items()})
