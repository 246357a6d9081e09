# cryoem_fsc: FSC of the half maps (masked too when a mask is given).
from pipelines.modalities.cryoem import fsc_half_maps
from pipelines.toolkit.smk import run_step

smk = snakemake
(half1, half2), mask = smk.input.half_maps, (smk.input.mask[0] if smk.input.mask else None)
run_step(
    smk,
    fsc_half_maps,
    half1=half1,
    half2=half2,
    mask=mask,
    fsc_parquet=smk.output.table,
    fsc_json=smk.output.summary,
    fsc_png=smk.output.png,
    threads=smk.threads,
    voxel_size_zyx=smk.params.voxel_size_zyx,
    displays=tuple(smk.params.names.get(role) for role in ("half_map_1", "half_map_2", "mask")),
)
