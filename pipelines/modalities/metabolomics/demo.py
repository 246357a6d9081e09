"""A synthetic but physically sensible LC-MS experiment for ``binds demo`` and the tests.

Three runs (one per sample) of a reversed-phase positive-mode method: a handful of metabolites
elute as Gaussian peaks, each seen as [M+H]+ with its 13C isotopes, on top of chemical noise
peaks and a low baseline; abundances differ between samples, retention times drift by a
second or two and masses scatter by a few ppm, as on a real Orbitrap.  Every few MS1 scans a
data-dependent MS2 of the most intense precursor follows.  The mzML files are written with
psims; a ``targets.csv`` asks for four of the compounds.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.modalities.metabolomics.chem import adduct_mz, formula_mass

# name, formula, retention time (s), peak width sigma (s), base abundance
DEMO_COMPOUNDS: list[tuple[str, str, float, float, float]] = [
    ("creatinine", "C4H7N3O", 42.0, 2.5, 4.0e6),
    ("leucine", "C6H13NO2", 71.0, 3.0, 8.0e6),
    ("phenylalanine", "C9H11NO2", 118.0, 3.0, 1.2e7),
    ("caffeine", "C8H10N4O2", 150.0, 3.5, 2.0e7),
    ("tryptophan", "C11H12N2O2", 176.0, 3.0, 6.0e6),
    ("adenosine", "C10H13N5O4", 205.0, 3.5, 3.0e6),
    ("hippuric acid", "C9H9NO3", 232.0, 4.0, 5.0e6),
]
DEMO_SAMPLES = ("S1", "S2", "S3")
DEMO_TARGETS = ("caffeine", "phenylalanine", "tryptophan", "adenosine")
_C13 = 1.0033548378
SCAN_INTERVAL_S = 1.0
RUN_LENGTH_S = 270.0


def _isotopes(formula: str) -> list[tuple[float, float]]:
    """(mass offset, relative abundance) of M, M+1, M+2 from the carbon count (13C 1.07 %)."""
    import re

    m = re.search(r"C(\d*)(?![a-z])", formula)
    n_c = int(m.group(1) or 1) if m else 0
    p = 0.0107
    m1 = n_c * p / (1 - p)
    m2 = m1 * m1 / 2
    return [(0.0, 1.0), (_C13, m1), (2 * _C13, m2)]


@dataclass(frozen=True, slots=True)
class _Ions:
    """The ions of one run: the compounds' [M+H]+ isotopes (m/z, apex RT, sigma, height) and
    the background ions (m/z, mean level) present all run long."""

    mz: np.ndarray
    rt: np.ndarray
    sigma: np.ndarray
    height: np.ndarray
    background_mz: np.ndarray
    background_level: np.ndarray


def _run_ions(rng: np.random.Generator, *, scale: dict[str, float], rt_shift: float) -> _Ions:
    """The compounds' ions of a sample (abundance ``scale``, RT shifted by ``rt_shift``) and
    the run's background ions (drawn from ``rng``)."""
    ions = []
    for name, formula, rt, sigma, base in DEMO_COMPOUNDS:
        mz0 = adduct_mz(formula_mass(formula), "[M+H]+")
        for offset, rel in _isotopes(formula):
            ions.append((mz0 + offset, rt + rt_shift, sigma, base * scale[name] * rel))
    # chemical noise: fixed background ions present all run long with small fluctuating intensity
    background_mz = np.sort(rng.uniform(100.0, 400.0, 80))
    background_level = rng.lognormal(np.log(2.0e4), 0.6, background_mz.size)
    return _Ions(
        mz=np.array([i[0] for i in ions]),
        rt=np.array([i[1] for i in ions]),
        sigma=np.array([i[2] for i in ions]),
        height=np.array([i[3] for i in ions]),
        background_mz=background_mz,
        background_level=background_level,
    )


def _write_header(out) -> None:
    """The mzML's file description, software, instrument (a Q Exactive) and processing."""
    out.controlled_vocabularies()
    out.file_description(["MS1 spectrum", "MSn spectrum"])
    out.software_list([{"id": "psims-writer", "version": "1.4", "params": ["python-psims"]}])
    out.instrument_configuration_list(
        [
            out.InstrumentConfiguration(
                id="IC1",
                component_list=out.ComponentList(
                    [
                        out.Source(1, ["electrospray ionization"]),
                        out.Analyzer(2, ["orbitrap"]),
                        out.Detector(3, ["inductive detector"]),
                    ]
                ),
                params=["Q Exactive"],
            )
        ]
    )
    out.data_processing_list(
        [
            out.DataProcessing(
                [
                    out.ProcessingMethod(
                        order=0, software_reference="psims-writer", params=["Conversion to mzML"]
                    )
                ],
                id="dp1",
            )
        ]
    )


def _ms1_spectrum(
    ions: _Ions, t: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The MS1 spectrum at RT ``t``: m/z and intensity (sorted by m/z), and per compound ion
    its elution signal and whether it is above the detection limit (for the MS2 that follows).
    The draws from ``rng`` are in a fixed order: the demo's bytes depend on it."""
    bg_mz, bg_level = ions.background_mz, ions.background_level
    elution = np.exp(-0.5 * ((t - ions.rt) / ions.sigma) ** 2) * ions.height
    on = elution > 2.0e3
    # ~3 ppm mass scatter, stronger for weak signals (counting statistics)
    ppm = rng.normal(0.0, 1.5, on.sum()) * (1 + 2e4 / (elution[on] + 1e4))
    mz = np.concatenate(
        [ions.mz[on] * (1 + ppm * 1e-6), bg_mz * (1 + rng.normal(0, 2.0, bg_mz.size) * 1e-6)]
    )
    inten = np.concatenate(
        [
            elution[on] * rng.normal(1.0, 0.04, on.sum()),
            bg_level * rng.gamma(4.0, 0.25, bg_mz.size),
        ]
    )
    order = np.argsort(mz)
    return mz[order], np.clip(inten[order], 1.0, None).astype(np.float32), elution, on


def _ms2_spectrum(
    ions: _Ions, elution: np.ndarray, on: np.ndarray, rng: np.random.Generator
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """A data-dependent MS2 of the most intense compound ion (of the first background ion when
    none is on): precursor m/z and intensity, fragment m/z and intensity."""
    top = int(np.argmax(np.where(on, elution, 0.0)))
    prec = float(ions.mz[top]) if on[top] else float(ions.background_mz[0])
    prec_int = float(elution[top]) if on[top] else float(ions.background_level[0])
    frag_mz = np.sort(prec * rng.uniform(0.25, 0.95, 12))
    frag_int = rng.lognormal(np.log(5e4), 1.0, frag_mz.size).astype(np.float32)
    return prec, prec_int, frag_mz, frag_int


def _write_run(
    path: Path, *, sample: str, rng: np.random.Generator, scale: dict[str, float], rt_shift: float
) -> None:
    from psims.mzml.writer import MzMLWriter

    ions = _run_ions(rng, scale=scale, rt_shift=rt_shift)
    times = np.arange(0.0, RUN_LENGTH_S, SCAN_INTERVAL_S) + 0.5
    n_ms2 = sum(1 for k in range(len(times)) if k % 4 == 3)
    with MzMLWriter(open(path, "wb"), close=True) as out:
        _write_header(out)
        with out.run(id=sample, instrument_configuration="IC1"):
            with out.spectrum_list(count=len(times) + n_ms2):
                scan = 0
                for k, t in enumerate(times):
                    mz, inten, elution, on = _ms1_spectrum(ions, t, rng)
                    ms1_id = f"scan={scan + 1}"
                    out.write_spectrum(
                        mz,
                        inten,
                        id=ms1_id,
                        centroided=True,
                        scan_start_time=t / 60.0,
                        params=[
                            "MS1 spectrum",
                            {"ms level": 1},
                            {"total ion current": float(inten.sum())},
                        ],
                        scan_window_list=[(100.0, 400.0)],
                    )
                    scan += 1
                    if k % 4 == 3:
                        prec, prec_int, frag_mz, frag_int = _ms2_spectrum(ions, elution, on, rng)
                        out.write_spectrum(
                            frag_mz,
                            frag_int,
                            id=f"scan={scan + 1}",
                            centroided=True,
                            scan_start_time=(t + 0.1) / 60.0,
                            params=[
                                "MSn spectrum",
                                {"ms level": 2},
                                {"total ion current": float(frag_int.sum())},
                            ],
                            precursor_information={
                                "mz": prec,
                                "intensity": prec_int,
                                "charge": 1,
                                "scan_id": ms1_id,
                                "activation": [
                                    "beam-type collision-induced dissociation",
                                    {"collision energy": 30.0},
                                ],
                                "isolation_window": [0.5, prec, 0.5],
                            },
                        )
                        scan += 1


def make_demo_run(run_dir: Path, *, seed: int = 0) -> Path:
    """Write a demo LC-MS run folder: three mzML files, targets.csv and experiment.yaml.

    Deterministic for a given ``seed`` (same bytes each time).  Returns ``run_dir``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, sample in enumerate(DEMO_SAMPLES):
        scale = {name: float(rng.lognormal(0.0, 0.35)) for name, *_ in DEMO_COMPOUNDS}
        _write_run(
            run_dir / f"{sample}.mzML",
            sample=sample,
            rng=rng,
            scale=scale,
            rt_shift=float((i - 1) * 1.5 + rng.normal(0, 0.3)),
        )
    with open(run_dir / "targets.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["name", "formula", "adduct", "mz", "rt_start_s", "rt_end_s", "ppm"])
        for name, formula, rt, *_ in DEMO_COMPOUNDS:
            if name in DEMO_TARGETS:
                w.writerow([name, formula, "[M+H]+", "", f"{rt - 20:.0f}", f"{rt + 20:.0f}", "10"])
        # one target given by m/z alone (leucine [M+H]+), as units often do
        w.writerow(
            [
                "leucine",
                "",
                "",
                f"{adduct_mz(formula_mass('C6H13NO2'), '[M+H]+'):.5f}",
                "51",
                "91",
                "10",
            ]
        )
    (run_dir / "experiment.yaml").write_text(f"""\
schema_version: 1
request_id: BINDS-DEMO-LCMS-{seed:04d}
title: Demo LC-MS metabolomics run, three plasma extracts (synthetic)
modality: metabolomics
support_unit: metabolome
instrument: {{manufacturer: Thermo Fisher, model: Q Exactive}}
acquired: 2026-11-20
operator: demo
access: {{level: open}}
personal_data: false  # synthetic: no person behind these samples (README, Personal data)
license: CC-BY-4.0
samples:
  - {{id: S1, organism: "NCBITaxon:9606", tissue: "UBERON:0001969", files: [S1.mzML],
      description: "plasma extract 1, before a caffeine dose"}}
  - {{id: S2, organism: "NCBITaxon:9606", tissue: "UBERON:0001969", files: [S2.mzML],
      compound: "CHEBI:27732", description: "plasma extract 2, one hour after a caffeine dose"}}
  - {{id: S3, organism: "NCBITaxon:9606", tissue: "UBERON:0001969", files: [S3.mzML],
      compound: "CHEBI:27732", description: "plasma extract 3, two hours after a caffeine dose"}}
metabolomics:
  polarity: positive
  chromatography: {{type: reversed-phase, column: C18 2.1 x 100 mm, gradient_min: 5}}
  targets: targets.csv
""")
    return run_dir
