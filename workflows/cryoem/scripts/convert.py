# cryoem_convert: map (+ half maps, mask) -> data/map.ome.zarr, streaming.
from pipelines.modalities.cryoem import convert_maps
from pipelines.smk import run_step

smk = snakemake
run_step(
    smk,
    convert_maps,
    map=smk.input.mrc,
    half_maps=list(smk.input.half_maps),
    mask=smk.input.mask[0] if smk.input.mask else None,
    out=smk.output.zarr,
    voxel_size_zyx=smk.params.voxel_size_zyx,
    mask_threshold=smk.params.mask_threshold,
    names=smk.params.names,
    threads=smk.threads,
)
