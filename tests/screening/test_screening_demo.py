"""The demo run (``binds demo``): synthetic 384-well plates with controls, edge effects and a
dose-response series; the pipeline must find what the generator put in."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from screening_helpers import load_block

from pipelines.describe.metadata import load_experiment
from pipelines.modalities import screening
from pipelines.modalities.screening.demo import DOSE_PLATE, demo_truth


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    run = screening.make_demo_run(tmp_path_factory.mktemp("demo") / "run", seed=0)
    return run


def test_demo_run_is_valid_and_deterministic(demo, tmp_path):
    exp = load_experiment(demo)
    assert exp.modality == "screening" and exp.block["normalisation"] == "percent_inhibition"
    assert screening.preflight(demo, exp.data) == []
    again = screening.make_demo_run(tmp_path / "again", seed=0)
    assert _digest(again) == _digest(demo)
    other = screening.make_demo_run(tmp_path / "other", seed=1)
    assert _digest(other)["DEMO-P01_R1.csv"] != _digest(demo)["DEMO-P01_R1.csv"]
    assert (demo / "DEMO-P01_R1.csv").read_bytes().count(b"\r\n") > 16  # CRLF, like the readers


@pytest.fixture(scope="module")
def demo_out(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo-out")
    block = load_block(demo)
    raws = [
        screening.read_batch(run_dir=demo, block=block, batch=b, out=out / f"raw{b}.parquet")
        for b in range(screening.batch_count(demo, block))
    ]
    paths = {k: out / f"{k}.parquet" for k in ("wells", "plates", "hits", "dose_response")}
    screen = screening.process_screen(
        run_dir=demo, block=block, raw=raws, samples=load_experiment(demo).data["samples"]
    )
    screening.write_screen(
        screen,
        wells_out=paths["wells"],
        plates_out=paths["plates"],
        hits_out=paths["hits"],
        dose_response_out=paths["dose_response"],
        facts_out=out / "facts.json",
    )
    return {k: pd.read_parquet(v) for k, v in paths.items()}


def test_demo_plates_pass_qc(demo_out):
    plates = demo_out["plates"]
    assert len(plates) == DOSE_PLATE * 2 and plates.qc_pass.all()
    assert (
        (plates.z_prime > 0.5).all()
        and (plates.n_negative == 32).all()
        and (plates.n_positive == 32).all()
    )


def test_demo_hits_recover_the_active_library_compounds(demo_out):
    truth = demo_truth(0)
    active_ids = {f"CPD-{i + 1:05d}" for i in np.flatnonzero(truth["library_active"])}
    hits = demo_out["hits"]
    lib_hits = set(hits[hits.plate < DOSE_PLATE].sample_id)
    recall = len(lib_hits & active_ids) / len(active_ids)
    precision = len(lib_hits & active_ids) / max(len(lib_hits), 1)
    assert recall >= 0.9 and precision >= 0.9, (recall, precision)


def test_b_score_removes_the_edge_effect(demo_out):
    """The generator dims the outer ring by 12 %: raw robust z of inactive edge wells is clearly
    negative, their B-score is not."""
    w = demo_out["wells"]
    truth = demo_truth(0)
    inactive = {f"CPD-{i + 1:05d}" for i in np.flatnonzero(~truth["library_active"])}
    lib = w[(w.plate < DOSE_PLATE) & w.sample_id.isin(inactive)]
    edge = lib.row.isin(["A", "P"])
    assert lib[edge].robust_z.median() < -1.0
    assert abs(lib[edge].b_score.median()) < 0.3


def test_demo_dose_response_recovers_ec50(demo_out):
    truth = demo_truth(0)
    fits = demo_out["dose_response"].set_index("compound_key")
    assert len(fits) == 16 and fits.fit_ok.all() and (fits.direction == "increasing").all()
    true_ec50 = pd.Series(truth["ec50_um"], index=[f"DR-{i + 1:02d}" for i in range(16)])
    err = np.abs(np.log10(fits.ec50) - np.log10(true_ec50.loc[fits.index]))
    assert err.max() < 0.15  # decades: within 40 % despite the edge effect and 5 % noise
    inside = (fits.ec50_ci_low <= true_ec50.loc[fits.index]) & (
        true_ec50.loc[fits.index] <= fits.ec50_ci_high
    )
    assert inside.mean() >= 0.6
    assert (fits.concentration_unit == "uM").all() and (fits.n_concentrations == 10).all()


def test_demo_wells_carry_compound_ids_and_sample_links(demo, demo_out):
    w = demo_out["wells"]
    stau = w[w.compound == "staurosporine"]
    assert len(stau) and (stau.compound_chebi == "CHEBI:15738").all()
    assert (stau.compound_pubchem_cid == 44259).all()
    assert (stau.compound_inchikey == "HKSZLNNOFSGOKW-FYTWVXJKSA-N").all()
    caffeine = w[w.compound_chebi == "CHEBI:27732"]
    assert set(caffeine.compound) == {"DR-01"} and set(caffeine.plate) == {DOSE_PLATE}
    assert w[w.compound.str.startswith("CPD-", na=False)].compound_chebi.isna().all()
    by_plate = w.groupby("plate").experiment_sample_id.unique()
    assert by_plate.map(list).to_dict() == {
        **{p: ["LIB-KIN-01"] for p in range(1, DOSE_PLATE)},
        DOSE_PLATE: ["DOSE-KIN-01"],
    }
    assert list(screening.list_inputs(demo, load_experiment(demo).data).problems) == []


def test_bad_compound_ids_name_file_well_and_column(tmp_path):
    from pipelines.errors import InputError
    from pipelines.modalities.screening import readers

    path = tmp_path / "platemap.csv"
    path.write_text(
        "well,compound,ChEBI,PubChem CID,InChIKey\n"
        "A01,ok,chebi:15738,44259.0,HKSZLNNOFSGOKW-FYTWVXJKSA-N\n"
        "A02,bad,15738,-3,HKSZLNNOFSGOKW\n"
    )
    with pytest.raises(InputError) as err:
        readers.read_plate_map(path, root=tmp_path)
    lines = {(p.file, p.where) for p in err.value.problems}
    assert lines == {
        ("platemap.csv", "line 3, well A02, column chebi"),
        ("platemap.csv", "line 3, well A02, column pubchem_cid"),
        ("platemap.csv", "line 3, well A02, column inchikey"),
    }
    path.write_text(path.read_text().splitlines()[0] + "\n" + path.read_text().splitlines()[1])
    ok = readers.read_plate_map(path, root=tmp_path).iloc[0]
    assert (ok.compound_chebi, ok.compound_pubchem_cid) == ("CHEBI:15738", 44259)


def test_sample_files_must_name_inputs(demo, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(demo, run)
    text = (run / "experiment.yaml").read_text()
    text = text.replace("DEMO-P05_R2.csv]", "DEMO-P05_R3.csv]").replace(
        '"DEMO-P0[1-4]_R*.csv"', '"../elsewhere/*.csv"'
    )
    (run / "experiment.yaml").write_text(text)
    problems = screening.list_inputs(run, load_experiment(run).data).problems
    assert {(p.file, p.where.split(": ")[-1]) for p in problems} == {
        ("experiment.yaml", "samples[0].files[0]"),
        ("experiment.yaml", "samples[1].files[1]"),
    }
    assert any("outside the run folder" in p.message for p in problems)
    assert any("not found" in p.message for p in problems)
