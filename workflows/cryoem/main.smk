# cryo-EM map workflow: MRC/CCP4 (+ half maps, mask) -> data/map.ome.zarr + qc/.
#
#   cryoem_inspect   headers of every file -> _meta/facts.json        (fails fast on bad input)
#   cryoem_convert   map, half maps, mask  -> data/map.ome.zarr       (streaming pyramid)
#   cryoem_map_qc    map                   -> qc/map_stats.json, map_histogram.parquet, PNGs
#   cryoem_fsc       half maps (+ mask)    -> qc/fsc.parquet, fsc.json, fsc.png   (if two half maps)
#   cryoem_metrics   everything            -> qc/metrics.json                     (the target)

include: "common.smk"
include: "convert.smk"
include: "qc.smk"


rule cryoem_metrics:
    input:
        unpack(cryoem_metrics_inputs),
    output:
        metrics=STAGE / "qc" / "metrics.json",
    log:
        LOGS / "cryoem_metrics.log",
    benchmark:
        BENCH / "cryoem_metrics.tsv"
    threads: 1
    resources:
        mem_mb=attempt_mem_mb(500),
        runtime=5,
    conda:
        CRYOEM_ENV
    script:
        "scripts/metrics.py"
