"""A realistic synthetic screen for ``binds demo`` and the tests: 384-well plates exported as
reader grids, a cellHTS2 plate list, a plate map with controls and a dose-response series."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.modalities.screening.dose import logistic4
from pipelines.modalities.screening.plates import ROW_LETTERS, PlateFormat

NEG_LEVEL = 20000.0  # luminescence of untreated (DMSO) wells
POS_LEVEL = 2000.0  # full inhibition (staurosporine)
LIBRARY_PLATES = 4
DOSE_PLATE = LIBRARY_PLATES + 1
CONCENTRATIONS_UM = np.geomspace(0.001, 30.0, 10)  # 10-point series, 1 nM .. 30 uM
# structure ids of the plate map (ChEBI, PubChem CID, InChIKey): the controls, and the first
# dose-response compound (DR-01 is caffeine, which the metabolomics demo measures in plasma)
COMPOUND_IDS = {
    "DMSO": ("CHEBI:28262", 679, "IAZDPXIOMUYVGZ-UHFFFAOYSA-N"),
    "staurosporine": ("CHEBI:15738", 44259, "HKSZLNNOFSGOKW-FYTWVXJKSA-N"),
    "DR-01": ("CHEBI:27732", 2519, "RYYVLZVUVIJVGH-UHFFFAOYSA-N"),
}


def _ids(compound: str) -> str:
    chebi, cid, key = COMPOUND_IDS.get(compound, ("", "", ""))
    return f"{chebi},{cid},{key}"


def _control(row: int, col: int) -> str | None:
    """Controls in the outer two columns on each side, alternating by half plate (a common
    layout: both kinds on both sides, so a left-right gradient does not bias Z')."""
    if col in (0, 1, 22, 23):
        first_half = row < 8
        return "DMSO" if (first_half ^ (col in (1, 22))) else "STAU"
    return None


def demo_truth(seed: int = 0) -> dict:
    """The parameters the demo data are generated from (the tests check the pipeline finds them)."""
    rng = np.random.default_rng(seed)
    n_lib = LIBRARY_PLATES * 16 * 20
    active = rng.random(n_lib) < 0.03
    inhibition = np.where(active, rng.uniform(0.5, 0.95, n_lib), rng.normal(0.0, 0.02, n_lib))
    ec50 = 10 ** rng.uniform(-2.0, 0.5, 16)  # uM, inside the tested range
    hill = rng.uniform(0.8, 2.0, 16)
    return {
        "library_active": active,
        "library_inhibition": inhibition,
        "ec50_um": ec50,
        "hill": hill,
    }


def make_demo_run(run_dir: str | Path, *, seed: int = 0) -> Path:
    """Write the demo run folder (deterministic for ``seed``) and return it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    truth = demo_truth(seed)
    rng = np.random.default_rng(seed + 1)
    fmt = PlateFormat.of(384)
    rows, cols = np.indices((fmt.rows, fmt.cols))
    # evaporation at the edge (outer ring -12%) and a slight left-to-right dispensing gradient
    edge = np.where(
        (rows == 0) | (rows == fmt.rows - 1) | (cols == 0) | (cols == fmt.cols - 1), 0.88, 1.0
    )
    gradient = 1.0 + 0.06 * (cols / (fmt.cols - 1) - 0.5)
    map_lines = ["plate,well,sample_id,compound,concentration,content,ChEBI,PubChem CID,InChIKey"]
    list_lines = ["Filename\tPlate\tReplicate"]
    lib_i = 0
    inhibition = np.zeros((DOSE_PLATE, fmt.rows, fmt.cols))
    for plate in range(1, DOSE_PLATE + 1):
        for r in range(fmt.rows):
            for c in range(fmt.cols):
                well = f"{ROW_LETTERS[r]}{c + 1:02d}"
                ctl = _control(r, c)
                if ctl:
                    inhibition[plate - 1, r, c] = 1.0 if ctl == "STAU" else 0.0
                    conc = "1" if ctl == "STAU" else ""
                    name = "staurosporine" if ctl == "STAU" else "DMSO"
                    map_lines.append(f"{plate},{well},,{name},{conc},{ctl},{_ids(name)}")
                elif plate < DOSE_PLATE:
                    inhibition[plate - 1, r, c] = truth["library_inhibition"][lib_i]
                    map_lines.append(f"{plate},{well},CPD-{lib_i + 1:05d},,10,sample,,,")
                    lib_i += 1
                else:
                    # dose plate: compound per row, 10 concentrations in columns 3-12 and again 13-22
                    k = (c - 2) % 10
                    conc = CONCENTRATIONS_UM[k]
                    inhibition[plate - 1, r, c] = logistic4(
                        np.log10(conc), 0.0, 1.0, np.log10(truth["ec50_um"][r]), truth["hill"][r]
                    )
                    dr = f"DR-{r + 1:02d}"
                    map_lines.append(f"{plate},{well},{dr},{dr},{conc:.6g},sample,{_ids(dr)}")
    for plate in range(1, DOSE_PLATE + 1):
        for rep in (1, 2):
            level = NEG_LEVEL * (1 - inhibition[plate - 1]) + POS_LEVEL * inhibition[plate - 1]
            signal = level * edge * gradient * rng.normal(1.0, 0.05, level.shape)
            name = f"DEMO-P{plate:02d}_R{rep}.csv"
            _write_envision_like(
                run_dir / name, np.round(signal).astype(int), barcode=f"DEMO-P{plate:02d}-R{rep}"
            )
            list_lines.append(f"{name}\t{plate}\t{rep}")
    (run_dir / "platemap.csv").write_text("\n".join(map_lines) + "\n")
    (run_dir / "Platelist.txt").write_text("\n".join(list_lines) + "\n")
    (run_dir / "experiment.yaml").write_text(_EXPERIMENT)
    return run_dir


def _write_envision_like(path: Path, grid: np.ndarray, *, barcode: str) -> None:
    """A reader export as the unit's readers write them: a key/value header, then the grid, CRLF."""
    header = [
        "Exported with plate reader software 1.14 (synthetic demo)",
        "Plate information",
        "Plate,Barcode,Measurement,Plate Size:",
        f"1,{barcode},Luminescence,384",
        "",
        "Results",
        "," + ",".join(str(c) for c in range(1, grid.shape[1] + 1)),
    ]
    body = [f"{ROW_LETTERS[r]}," + ",".join(str(v) for v in grid[r]) for r in range(grid.shape[0])]
    path.write_bytes(("\r\n".join(header + body) + "\r\n").encode("iso-8859-1"))


_EXPERIMENT = """\
# Synthetic kinase-inhibitor screen (binds demo): 4 library plates + 1 dose-response plate,
# 384 wells, 2 replicates, reader grid exports; controls DMSO (negative) and staurosporine.
schema_version: 1
request_id: BINDS-DEMO-0006
title: Kinase inhibitor library screen on 384-well plates (synthetic demo)
modality: screening
support_unit: hit-discovery
instrument: {manufacturer: PerkinElmer, model: EnVision 2105}
acquired: 2026-11-20
operator: demo
access: {level: open}
personal_data: false  # synthetic, HEK293 cells: no person behind these samples (README, Personal data)
license: CC-BY-4.0
samples:
  - id: LIB-KIN-01
    organism: NCBITaxon:9606
    description: HEK293 cells, ATP luminescence after 48 h compound treatment (library plates)
    files: ["DEMO-P0[1-4]_R*.csv"]
  - id: DOSE-KIN-01
    organism: NCBITaxon:9606
    description: HEK293 cells, dose-response plate (16 compounds, DR-01 is caffeine)
    files: [DEMO-P05_R1.csv, DEMO-P05_R2.csv]
screening:
  plate_format: 384
  controls: {negative: [DMSO], positive: [STAU]}
  normalisation: percent_inhibition
  score: {method: b_score, sign: "-"}
  hits: {threshold: 3.0, direction: up}
  dose_response: {response: normalised, concentration_unit: uM}
"""
