"""End to end: snakemake on config/test.yaml (tiny random models), then the HTML report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile",
         str(REPO / "config" / "test.yaml"), "--directory", str(workdir), *args],
        cwd=REPO, capture_output=True, text=True)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("e2e")
    proc = snakemake(workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir


def test_tables_and_samples(run_dir):
    table = pd.read_csv(run_dir / "results" / "tables" / "icl_accuracy.csv")
    assert set(table["model"]) == {"tiny-llama", "tiny-gpt2"}
    assert sorted(table["shots"].unique()) == [0, 2]
    assert (table["n"] == 12).all()
    assert (table["ci_low"] <= table["accuracy"]).all() and (table["accuracy"] <= table["ci_high"]).all()
    samples = pd.read_parquet(run_dir / "results" / "samples" / "tiny-llama" / "copy" / "shots2_seed0.parquet")
    assert {"prompt", "target", "prediction", "correct", "gold_logprob", "provider", "seed"} <= set(samples)
    assert samples["prompt"].str.count("Input:").eq(3).all()
    meta = json.loads((run_dir / "results" / "samples" / "tiny-llama" / "copy" / "shots2_seed0.meta.json").read_text())
    assert meta["provider"] == "CPUExecutionProvider" and meta["provider_requested"] == "cpu"
    assert len(meta["onnx_sha256"]) == 64 and len(meta["model_sha256"]) == 64


def test_parity_and_card(run_dir):
    for model in ("tiny-llama", "tiny-gpt2"):
        parity = json.loads((run_dir / "resources" / "onnx" / model / "parity.json").read_text())
        assert parity["passed"] and parity["max_abs_diff_ablated"] <= parity["tolerance"]
        assert parity["ablation_effect_own_row"] > parity["tolerance"]
        assert parity["ablation_effect_other_rows"] == 0.0
        card = json.loads((run_dir / "resources" / "models" / model / "model.json").read_text())
        assert (card["layers"], card["heads"], card["head_dim"]) == (2, 4, 16)


def test_figure_and_report(run_dir):
    png = run_dir / "results" / "figures" / "copy_accuracy.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    proc = snakemake(run_dir, "--report", "report.html")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "copy_accuracy.png" in (run_dir / "report.html").read_text(errors="ignore")


def test_rerun_is_a_no_op_and_dry_run_is_clean(run_dir):
    proc = snakemake(run_dir, "-n")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr
