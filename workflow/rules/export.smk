rule export_onnx:
    """ONNX graph with a head_mask input and log-probs at target positions; parity vs PyTorch."""
    input:
        card="resources/models/{model}/model.json",
    output:
        onnx="resources/onnx/{model}/model.onnx",
        parity="resources/onnx/{model}/parity.json",
    params:
        export=config["export"],
        runtime=RUNTIME,
    log:
        "logs/export_onnx/{model}.log",
    benchmark:
        "results/benchmarks/export_onnx/{model}.tsv"
    threads: RUNTIME["threads"]
    resources:
        mem_mb=8000,
    conda:
        "../../envs/inference.yaml"
    script:
        "../../scripts/export_onnx.py"
