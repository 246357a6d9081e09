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


def cryoem_metrics_inputs(wildcards) -> dict:
    """Every output (the metrics are the target); only the header check when inputs are bad."""
    inputs = {"facts": STAGE / "_meta" / "facts.json"}
    if not CRYOEM_OK:
        return inputs
    inputs |= {"zarr": STAGE / "data" / "map.ome.zarr", "stats": STAGE / "qc" / "map_stats.json",
               "histogram": STAGE / "qc" / "map_histogram.parquet",
               "slices": STAGE / "qc" / "map_slices.png", "projections": STAGE / "qc" / "map_projections.png"}
    if len(CRYOEM_HALVES) == 2:
        inputs |= {"fsc": STAGE / "qc" / "fsc.json", "fsc_table": STAGE / "qc" / "fsc.parquet",
                   "fsc_png": STAGE / "qc" / "fsc.png"}
    return inputs


rule cryoem_metrics:
    input:
        unpack(cryoem_metrics_inputs),
    output:
        metrics=STAGE / "qc" / "metrics.json",
    log:
        LOGS / "cryoem_metrics.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        CRYOEM_ENV
    script:
        "scripts/metrics.py"
