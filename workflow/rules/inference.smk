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
    log:
        "logs/run_icl/{model}/{task}/{variant}/shots{shots}_seed{seed}.log",
    benchmark:
        "results/benchmarks/run_icl/{model}/{task}/{variant}/shots{shots}_seed{seed}.tsv"
    conda:
        "../../envs/inference.yaml"
    threads: RUNTIME["threads"]
    resources:
        mem_mb=6000,
        gpu=USES_GPU,
    params:
        task_settings=icl_task_settings,
        runtime=RUNTIME,
    script:
        "../../scripts/run_icl.py"
