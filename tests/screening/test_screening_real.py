"""The real cellHTS2 screens end to end: KcViab (57 plates x 2 replicates, 384 wells) through
Snakemake, the two-way assay (Fusion CSV exports) through the same step functions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from screening_helpers import MINIMAL_EXPERIMENT, TWOWAY_BLOCK

from pipelines.errors import InputError
from pipelines.run.workflow import run_workflow
from pipelines.toolkit.stage import StagedDataset

DATA_FILES = [
    "data/dose_response.parquet",
    "data/hits.parquet",
    "data/plates.parquet",
    "data/wells.parquet",
]
QC_FILES = [
    "qc/dose_response_curves.png",
    "qc/metrics.json",
    "qc/plate_heatmaps_normalised.png",
    "qc/plate_heatmaps_raw.png",
    "qc/plate_qc.png",
    "qc/score_distribution.png",
]


def _stage(tmp_path, block):
    stage = StagedDataset(tmp_path / "work" / "stage")
    stage.meta_dir.mkdir(parents=True)
    data = dict(MINIMAL_EXPERIMENT, screening=block) if block else dict(MINIMAL_EXPERIMENT)
    (stage.meta_dir / "experiment.json").write_text(json.dumps(data))
    return stage


@pytest.fixture(scope="module")
def kcviab_stage(tmp_path_factory, kcviab):
    """One real Snakemake run of KcViab (cellHTS2 vignette settings: median, zscore, sign '-'),
    in two read batches so the batching is exercised too."""
    tmp = tmp_path_factory.mktemp("kcviab")
    stage = _stage(tmp, {"score": {"sign": "-"}, "batch_size": 60})
    run_workflow(run_dir=kcviab, stage=stage, modality="screening", cores=2)
    return stage


def test_kcviab_workflow_outputs(kcviab_stage):
    stage = kcviab_stage
    assert [rel for rel, _ in stage.published_files()] == DATA_FILES + QC_FILES
    assert (
        len(list((stage.meta_dir / "screening" / "raw").glob("batch_*.parquet"))) == 2
    )  # 114 files / 60
    m = stage.metrics
    assert (m["n_plates"], m["n_replicates"], m["plate_format"], m["n_wells"]) == (
        57,
        2,
        384,
        57 * 2 * 384,
    )
    assert m["n_excluded_wells"] == 48  # Screenlog.txt: plate 6, row A, both replicates
    assert m["replicate_correlation"] > 0.7
    assert m["robust_z_prime_screen_r1_c1"] > 0.5 and m["n_hits"] > 0
    facts = stage.facts["facts"]
    assert facts["organism"] == "Drosophila melanogaster" and facts["plate_format"] == 384
    schema = pq.read_schema(stage.data_dir / "wells.parquet")
    assert schema.field("compound").type == pa.string()  # all null in KcViab, still typed as text
    assert schema.metadata[b"binds.screening.format_version"] == b"1"
    assert json.loads(schema.metadata[b"binds.screening.settings"])["score"]["sign"] == "-"
    for png in QC_FILES:
        if png.endswith(".png"):
            assert (stage.root / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_kcviab_follows_cellhts2_semantics(kcviab_stage, kcviab):
    """Recompute the cellHTS2 pipeline from the raw files with plain pandas: per-plate median of
    sample wells, per-replicate (x - median) / mad over the screen's samples, sign '-', mean of
    the replicates; flagged wells NA."""
    plate_list = pd.read_csv(kcviab / "Platelist.txt", sep="\t")
    raw = pd.concat(
        [
            pd.read_csv(kcviab / f, sep="\t", header=None, names=["bc", "well", "raw"]).assign(
                plate=p, replicate=r
            )
            for f, p, r in plate_list[["Filename", "Plate", "Replicate"]].itertuples(index=False)
        ]
    )
    log = pd.read_csv(kcviab / "Screenlog.txt", sep="\t")
    flagged = set(zip(log.Plate, log.Sample, log.Well, strict=False))
    raw["x"] = [
        np.nan if (p, r, w) in flagged else v
        for p, r, w, v in raw[["plate", "replicate", "well", "raw"]].itertuples(index=False)
    ]
    raw["sample"] = ~raw.well.isin(["A01", "A02", "B01", "B02"])
    med = raw[raw["sample"]].groupby(["plate", "replicate"]).x.median().rename("m")
    raw = raw.join(med, on=["plate", "replicate"])
    raw["norm"] = raw.x / raw.m
    stats = (
        raw[raw["sample"]]
        .groupby("replicate")
        .norm.agg(center="median", mad=lambda v: 1.4826 * (v - v.median()).abs().median())
    )
    raw = raw.join(stats, on="replicate")
    raw["z"] = -(raw.norm - raw.center) / raw.mad
    ours = pd.read_parquet(kcviab_stage.data_dir / "wells.parquet").merge(
        raw[["plate", "replicate", "well", "z", "norm"]], on=["plate", "replicate", "well"]
    )
    assert len(ours) == 57 * 2 * 384
    np.testing.assert_allclose(ours.normalised, ours.norm, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(ours.score, ours.z, rtol=1e-9, equal_nan=True)
    summary = ours.groupby(["plate", "well"]).z.mean()
    got = ours.groupby(["plate", "well"]).score_summary.first()
    np.testing.assert_allclose(got, summary.loc[got.index], rtol=1e-9, equal_nan=True)
    # flagged wells are kept (raw) but excluded from every derived value
    plate6 = ours[(ours.plate == 6) & ours.well.str.match(r"A\d\d")]
    assert plate6.excluded.all() and plate6.raw.notna().all() and plate6.normalised.isna().all()
    assert not plate6.hit.any()
    # annotation joined: the first identifier column is the sample id
    a03 = ours[(ours.plate == 1) & (ours.well == "A03")].iloc[0]
    assert (a03.sample_id, a03.annot_GeneID) == ("HFA00274", "CG11371")


def test_kcviab_hits_and_plate_qc(kcviab_stage):
    hits = pd.read_parquet(kcviab_stage.data_dir / "hits.parquet")
    wells = pd.read_parquet(kcviab_stage.data_dir / "wells.parquet")
    assert (hits.score.abs() >= 2.0).all() and set(hits.content) == {"sample"}
    assert sorted(hits["rank"]) == list(range(1, len(hits) + 1))
    assert len(hits) == wells[wells.hit].drop_duplicates(["plate", "well"]).shape[0]
    plates = pd.read_parquet(kcviab_stage.data_dir / "plates.parquet")
    # one neg and one pos well per plate: Z' undefined but noted, the fold decides
    assert plates.z_prime.isna().all() and plates.qc_notes.str.contains("Z' undefined").all()
    failed = plates[~plates.qc_pass]
    assert len(failed) > 0 and failed.qc_notes.str.contains("S/B fold").all()


def test_twoway_assay_end_to_end(tmp_path, twoway, process):
    out = process(twoway, TWOWAY_BLOCK, tmp_path / "out")
    wells = pd.read_parquet(out["wells"])
    assert len(wells) == 2 * 96 and wells.raw.notna().all()
    a1 = wells[(wells.replicate == 1) & (wells.well == "A01")].iloc[0]
    assert (
        a1.raw == 1919
        and a1.content == "mock"
        and a1.control == "other"
        and a1.annot_GeneSymbol == "Mock"
    )
    assert set(wells[wells.well.isin(["C01", "F02"])].control) == {"positive"}
    assert set(wells[wells.well.isin(["C02", "F01"])].control) == {"inhibitor"}
    plates = pd.read_parquet(out["plates"])
    assert (
        (plates.n_positive == 2).all()
        and (plates.n_inhibitor == 2).all()
        and (plates.n_negative == 2).all()
    )
    assert plates.z_prime.notna().all() and plates.z_prime_inhibitor.notna().all()
    facts = json.loads(out["facts"].read_text())["facts"]
    assert facts["reader_software"] == "Fusion 3.50" and facts["plate_format"] == 96


def test_outputs_are_byte_identical_across_runs(tmp_path, twoway, process):
    from pipelines.modalities.screening import make_plots

    digests = []
    for i in (1, 2):
        out = process(twoway, TWOWAY_BLOCK, tmp_path / f"run{i}")
        pngs = make_plots(
            wells=out["wells"],
            plates=out["plates"],
            dose_response=out["dose_response"],
            block=TWOWAY_BLOCK,
            heatmap_raw=tmp_path / f"run{i}/a.png",
            heatmap_normalised=tmp_path / f"run{i}/b.png",
            plate_qc=tmp_path / f"run{i}/c.png",
            score_hist=tmp_path / f"run{i}/d.png",
            curves=tmp_path / f"run{i}/e.png",
        )
        digests.append(
            [
                p.read_bytes()
                for p in [out[k] for k in ("wells", "plates", "hits", "dose_response", "facts")]
                + pngs
            ]
        )
    assert digests[0] == digests[1]


def test_missing_plate_file_fails_the_workflow_with_exit_2_and_nothing_staged(tmp_path, kcviab):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("Plateconf.txt", "FT01-G01.txt", "FT01-G02.txt"):
        (run / name).symlink_to(kcviab / name)  # read in place, never copied
    (run / "Platelist.txt").write_text(
        "Filename\tPlate\tReplicate\nFT01-G01.txt\t1\t1\nFT01-G02.txt\t1\t2\nFT02-G01.txt\t2\t1\n"
    )
    stage = _stage(tmp_path, {})
    with pytest.raises(InputError) as err:
        run_workflow(run_dir=run, stage=stage, modality="screening", cores=1)
    assert [str(p) for p in err.value.problems] == [
        "FT02-G01.txt: plate 2: file not found (check the file name in the plate list (names are case-sensitive))"
    ]
    assert stage.published_files() == []
    assert err.value.exit_code == 2
