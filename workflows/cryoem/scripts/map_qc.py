# cryoem_map_qc: statistics, histogram, central slices and max projections of the map.
from pipelines.modalities.cryoem import map_qc
from pipelines.toolkit.smk import run_step

smk = snakemake
run_step(
    smk,
    map_qc,
    src=smk.input.mrc,
    stats_json=smk.output.stats,
    histogram_parquet=smk.output.histogram,
    slices_png=smk.output.slices,
    projections_png=smk.output.projections,
    display=smk.params.name,
    voxel_size_zyx=smk.params.voxel_size_zyx,
)
