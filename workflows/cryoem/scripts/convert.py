# cryoem_convert: map (+ half maps, mask) -> data/map.ome.zarr, streaming.
from pipelines.modalities.cryoem import convert_maps
from pipelines.toolkit.smk import run_step

smk = snakemake
halves = list(smk.input.half_maps)
by_role = {
    "map": smk.input.mrc,
    "half_map_1": halves[0] if halves else None,
    "half_map_2": halves[1] if len(halves) > 1 else None,
    "mask": smk.input.mask[0] if smk.input.mask else None,
}
run_step(
    smk,
    convert_maps,
    map=by_role["map"],
    half_maps=halves,
    mask=by_role["mask"],
    out=smk.output.zarr,
    voxel_size_zyx=smk.params.voxel_size_zyx,
    mask_threshold=smk.params.mask_threshold,
    # the params name files by role (they are recorded in the RO-Crate); the step by path
    names={str(p): smk.params.names[role] for role, p in by_role.items() if p},
    threads=smk.threads,
)
