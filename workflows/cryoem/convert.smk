rule cryoem_inspect:
    input:
        CRYOEM_INPUTS.all_files,
    output:
        facts=STAGE / "_meta" / "facts.json",
    params:
        run_dir=RUN_DIR,
        block=CRYOEM,
        by_run_id=BY_RUN_ID,
    log:
        LOGS / "cryoem_inspect.log",
    benchmark:
        BENCH / "cryoem_inspect.tsv"
    threads: 1
    resources:
        mem_mb=attempt_mem_mb(500),
        runtime=5,
    conda:
        CRYOEM_ENV
    script:
        "scripts/inspect.py"


# One job writes the whole store (map, half maps, labels/mask): they share one Zarr hierarchy.
# Memory: a few 128-deep bricks plus one chunk-deep slab per pyramid level (~0.1 x the map).
rule cryoem_convert:
    input:
        mrc=CRYOEM_MAP,
        half_maps=CRYOEM_HALVES,
        mask=CRYOEM_MASK,
        facts=rules.cryoem_inspect.output.facts,
    output:
        zarr=directory(STAGE / "data" / "map.ome.zarr"),
    params:
        voxel_size_zyx=cryoem_mod.voxel_override(CRYOEM),
        mask_threshold=CRYOEM["mask_threshold"],
        names=CRYOEM_NAMES,
    log:
        LOGS / "cryoem_convert.log",
    benchmark:
        BENCH / "cryoem_convert.tsv"
    threads: 2
    resources:
        mem_mb=cryoem_mem_mb(600, 0.35),
        runtime=cryoem_runtime(10, 2),
    conda:
        CRYOEM_ENV
    script:
        "scripts/convert.py"
