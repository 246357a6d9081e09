# cryo-EM: resolve the run's files once, at parse time (names only, cheap). Their headers are
# checked by the first rule (cryoem_inspect), so bad input stops the run before any compute and
# is reported as a file/field/problem line by `binds run`.
from pipelines.modalities import cryoem as cryoem_mod

# the block with the documented defaults (mask_threshold ...); a hand-edited experiment.json
# with unknown keys stops here
CRYOEM = modality_block("cryoem")
CRYOEM_INPUTS = cryoem_mod.resolve_inputs(run_dir=RUN_DIR, block=CRYOEM)
if BY_RUN_ID:  # human data: the files by their run ids in every file the rules write
    CRYOEM_INPUTS = CRYOEM_INPUTS.by_run_id()
# with problems only cryoem_inspect is requested (it fails with them); placeholders keep the
# other rules parseable
CRYOEM_MAP = CRYOEM_INPUTS.map or RUN_DIR / "no-map-found.mrc"
CRYOEM_HALVES = list(CRYOEM_INPUTS.half_maps)
CRYOEM_MASK = [CRYOEM_INPUTS.mask] if CRYOEM_INPUTS.mask else []
# role -> the name its file goes by in the outputs (human data: its run id); by role, not by
# path: a rule's params are recorded in the RO-Crate
CRYOEM_NAMES = {
    role: CRYOEM_INPUTS.name(p)
    for role, p in (("map", CRYOEM_INPUTS.map), ("mask", CRYOEM_INPUTS.mask),
                    *((f"half_map_{i}", h) for i, h in enumerate(CRYOEM_INPUTS.half_maps, start=1)))
    if p is not None
}
CRYOEM_OK = not CRYOEM_INPUTS.problems
CRYOEM_ENV = "../../envs/cryoem.yaml"


def cryoem_map_mb(wildcards=None) -> float:
    """Decompressed size of the map in MiB (a gzip/bzip2 map: the size its checked header
    declares, not a guess from the compressed size, which can be 1000x smaller)."""
    from pipelines.modalities.cryoem.mrc import map_bytes

    p = Path(CRYOEM_MAP)
    if not p.is_file():
        return 1.0
    return map_bytes(p) / 2**20


def cryoem_mem_mb(base: int, per_map_mb: float):
    """mem_mb = base + per_map_mb x map size: the rule's working set (see docs/formats/cryoem.md)."""
    return attempt_mem_mb(lambda wildcards, input: base + per_map_mb * cryoem_map_mb())


def cryoem_runtime(base: int, per_gb: float):
    """runtime (minutes) = base + per_gb x map size in GB, at a conservative 50 MB/s."""
    return lambda wildcards, attempt: int((base + per_gb * cryoem_map_mb() / 1024) * attempt)


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
