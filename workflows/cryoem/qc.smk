# QC reads the MRC files again (not the Zarr), so it runs next to cryoem_convert.
rule cryoem_map_qc:
    input:
        mrc=CRYOEM_MAP,
        facts=rules.cryoem_inspect.output.facts,
    output:
        stats=STAGE / "qc" / "map_stats.json",
        histogram=STAGE / "qc" / "map_histogram.parquet",
        slices=report(STAGE / "qc" / "map_slices.png", caption="report/map_slices.rst",
                      category="Cryo-EM map", labels={"figure": "central slices"}),
        projections=report(STAGE / "qc" / "map_projections.png", caption="report/map_projections.rst",
                           category="Cryo-EM map", labels={"figure": "maximum projections"}),
    params:
        voxel_size_zyx=cryoem_mod.voxel_override(CRYOEM),
        name=CRYOEM_INPUTS.name(CRYOEM_INPUTS.map),
    log:
        LOGS / "cryoem_map_qc.log",
    benchmark:
        BENCH / "cryoem_map_qc.tsv"
    threads: 1
    resources:
        mem_mb=cryoem_mem_mb(600, 0.25),
        runtime=cryoem_runtime(10, 2),
    conda:
        CRYOEM_ENV
    script:
        "scripts/map_qc.py"


# The FSC needs both half maps and their Fourier transforms in memory (float32 + complex64):
# about 6 x one half map, 7 x with a mask.
rule cryoem_fsc:
    input:
        half_maps=CRYOEM_HALVES,
        mask=CRYOEM_MASK,
        facts=rules.cryoem_inspect.output.facts,
    output:
        table=STAGE / "qc" / "fsc.parquet",
        summary=STAGE / "qc" / "fsc.json",
        png=report(STAGE / "qc" / "fsc.png", caption="report/fsc.rst", category="Cryo-EM map",
                   labels={"figure": "FSC"}),
    params:
        voxel_size_zyx=cryoem_mod.voxel_override(CRYOEM),
        names=CRYOEM_NAMES,
    log:
        LOGS / "cryoem_fsc.log",
    benchmark:
        BENCH / "cryoem_fsc.tsv"
    threads: 2
    resources:
        mem_mb=cryoem_mem_mb(600, 7.5),
        runtime=cryoem_runtime(10, 4),
    conda:
        CRYOEM_ENV
    script:
        "scripts/fsc.py"
