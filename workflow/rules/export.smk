rule export_onnx:
    """ONNX graph with a head_mask input and log-probs at target positions; parity vs PyTorch."""
    input:
        card="resources/models/{model}/model.json",
    output:
        onnx="resources/onnx/{model}/model.onnx",
        parity="resources/onnx/{model}/parity.json",
    log:
        "logs/export_onnx/{model}.log",
    benchmark:
        "results/benchmarks/export_onnx/{model}.tsv"
    priority: 90
    conda:
        "../../envs/inference.yaml"
    threads: RUNTIME["threads"]
    resources:
        mem_mb=8000,
    params:
        export=config["export"],
        runtime=RUNTIME,
    script:
        "../../scripts/export_onnx.py"


rule export_layered:
    """One ONNX graph per stage (embedding, each block, final norm + LM head): sweeps start at
    the first ablated layer and broadcast one prefix cache; parity vs PyTorch."""
    input:
        card="resources/models/{model}/model.json",
    output:
        graphs=directory("resources/onnx/{model}/layered"),
        parity="resources/onnx/{model}/layered_parity.json",
    log:
        "logs/export_layered/{model}.log",
    benchmark:
        "results/benchmarks/export_layered/{model}.tsv"
    priority: 90
    conda:
        "../../envs/inference.yaml"
    threads: RUNTIME["threads"]
    resources:
        mem_mb=8000,
    params:
        export=config["export"],
    script:
        "../../scripts/export_layered.py"
