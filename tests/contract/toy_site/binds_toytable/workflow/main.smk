# toytable: every CSV of the run folder -> data/table.parquet -> qc/metrics.json
import binds_toytable as TOY

TOY_INPUTS = [str(p) for p in TOY.list_inputs(RUN_DIR, EXPERIMENT).files]
TOY_BLOCK = {"delimiter": ",", **(EXPERIMENT.get("toytable") or {})}


rule toytable_convert:
    input:
        TOY_INPUTS,
    output:
        table=STAGE / "data" / "table.parquet",
    params:
        delimiter=TOY_BLOCK["delimiter"],
    log:
        LOGS / "toytable_convert.log",
    benchmark:
        BENCH / "toytable_convert.tsv"
    threads: 1
    resources:
        mem_mb=200,
        runtime=5,
    script:
        "scripts/convert.py"


rule toytable_metrics:
    input:
        table=rules.toytable_convert.output.table,
    output:
        metrics=STAGE / "qc" / "metrics.json",
    log:
        LOGS / "toytable_metrics.log",
    threads: 1
    resources:
        mem_mb=200,
        runtime=5,
    script:
        "scripts/metrics.py"
