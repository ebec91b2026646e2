rule run_icl:
    """Score one model x task x variant x shots x seed cell with onnxruntime; write its samples log."""
    input:
        card="resources/models/{model}/model.json",
        onnx="resources/onnx/{model}/model.onnx",
        parity="resources/onnx/{model}/parity.json",
        task_files=task_files,
    output:
        samples="results/samples/{model}/{task}/{variant}/shots{shots}_seed{seed}.parquet",
        meta="results/samples/{model}/{task}/{variant}/shots{shots}_seed{seed}.meta.json",
    params:
        task_settings=lambda wc: TASKS[wc.task],
        runtime=RUNTIME,
    log:
        "logs/run_icl/{model}/{task}/{variant}/shots{shots}_seed{seed}.log",
    benchmark:
        "results/benchmarks/run_icl/{model}/{task}/{variant}/shots{shots}_seed{seed}.tsv"
    threads: RUNTIME["threads"]
    resources:
        mem_mb=6000,
        gpu=USES_GPU,
    conda:
        "../../envs/inference.yaml"
    script:
        "../../scripts/run_icl.py"
