"""Human data end to end (issue 22): a refused run leaves no planted identifier anywhere (store,
work folder, inbox state, Prefect database, logs); an accepted human LC-MS run travels under run
ids (store keys, Snakemake wildcards, Prefect task-run names, log files), the mapping to the
raw files in the version's _meta/run_ids.json."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipelines import modalities
from pipelines.cli import app
from pipelines.describe.metadata import default_dataset_id

runner = CliRunner()
PLANTED = ("Yamada", "YAMADA", "yamada", "山田", "090-1234-5678", "19700102", "1234567")


def everything_under(*roots: Path) -> list[tuple[str, bytes]]:
    """(path, bytes) of every file under ``roots``: names and contents, binary included."""
    out = []
    for root in roots:
        if not root.exists():
            continue
        for p in root.rglob("*"):
            if p.is_file():
                out.append((str(p), p.read_bytes()))
            out.append((str(p), b""))  # the name alone (folders too)
    return out


def assert_no_planted(*roots: Path) -> None:
    for path, body in everything_under(*roots):
        for v in PLANTED:
            assert v not in path, f"{v!r} in the name {path}"
            for enc in ("utf-8", "utf-16-le"):
                assert v.encode(enc) not in body, f"{v!r} ({enc}) inside {path}"


def human_lcms(dest: Path, *, plant: bool) -> Path:
    run = dest
    modalities.get("metabolomics").make_demo_run(run)
    exp = yaml.safe_load((run / "experiment.yaml").read_text())
    exp.pop("personal_data", None)
    exp["access"] = {"level": "restricted"}
    if plant:  # its own dataset: other tests' work folders (binary stages) are not searched
        exp["request_id"] = f"BINDS-2026-{uuid.uuid4().int % 10**6:06d}"
    # distinctive (harmless) raw names: they must not reach keys, wildcards or task names
    for i, s in enumerate(exp["samples"], start=1):
        new = f"plasma_qx{i}7z.mzML"
        (run / s["files"][0]).rename(run / new)
        s["files"] = [new]
    if plant:
        old = exp["samples"][0]["files"][0]
        (run / old).rename(run / "YAMADA_TARO_19700102_plasma.mzML")
        exp["samples"][0]["files"] = ["YAMADA_TARO_19700102_plasma.mzML"]
        exp["samples"][0]["description"] = "Patient Yamada Taro, tel 090-1234-5678, MRN 1234567"
    (run / "experiment.yaml").write_text(yaml.safe_dump(exp, sort_keys=False, allow_unicode=True))
    return run


@pytest.mark.slow
def test_a_refused_run_leaves_no_identifier_anywhere(tmp_path):
    prefect_home = Path(os.environ["PREFECT_HOME"])
    inbox = tmp_path / "INBOX"
    inbox.mkdir()
    run = human_lcms(inbox / "run-a", plant=True)
    request_id = yaml.safe_load((run / "experiment.yaml").read_text())["request_id"]
    dataset_id = default_dataset_id(request_id, "metabolomics")
    store, work = tmp_path / "store", tmp_path / "work"
    result = runner.invoke(
        app,
        ["run", str(run), "--store", str(store), "--work-dir", str(work), "--cores", "1"],
        catch_exceptions=False,
    )
    assert result.exit_code == 2, result.output
    assert "holds a personal name" in result.output
    for v in PLANTED:
        assert v not in result.output
    # the same folder through the inbox (a Prefect flow runner, state file)
    result = runner.invoke(
        app,
        ["watch", str(inbox), "--once", "--settle", "0", "--store", str(store)],
        catch_exceptions=False,
    )
    assert result.exit_code == 1, result.output
    state = json.loads((inbox / ".binds-inbox.json").read_text())
    assert state["run-a"]["status"] == "invalid"
    for v in PLANTED:
        assert v not in result.output
    (run / "YAMADA_TARO_19700102_plasma.mzML").unlink()  # the planted file itself is the input
    shutil.rmtree(run)
    own_work = [p for p in (Path.cwd() / ".binds-work").glob(f"{dataset_id}*")]
    assert_no_planted(store, work, inbox, prefect_home, *own_work)


@pytest.mark.slow
def test_a_human_run_travels_under_run_ids(tmp_path):
    prefect_home = Path(os.environ["PREFECT_HOME"])
    run = human_lcms(tmp_path / "lcms", plant=False)
    store, work = tmp_path / "store", tmp_path / "work"
    result = runner.invoke(
        app,
        ["run", str(run), "--store", str(store), "--work-dir", str(work), "--cores", "2", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    keys = [p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()]
    spectra = sorted(k.rsplit("/", 1)[1] for k in keys if "/data/spectra.parquet/" in k)
    assert spectra == ["run-001.parquet", "run-002.parquet", "run-003.parquet"]
    assert not [k for k in keys if "qx" in k]
    # file names in the work folder (logs, benchmarks, intermediate files): run ids only
    assert not [p for p in work.rglob("*") if "qx" in p.name]
    mapping = next(store.rglob("_meta/run_ids.json"))
    ids = json.loads(mapping.read_text())["run_ids"]
    assert {k: v["name"] for k, v in ids.items()} == {
        "run-001": "plasma_qx17z.mzML",
        "run-002": "plasma_qx27z.mzML",
        "run-003": "plasma_qx37z.mzML",
    }
    assert mapping.relative_to(store).parts[0] == "restricted"
    # Prefect task-run names carry the run ids
    import sqlite3

    db = next(prefect_home.rglob("*.db"))
    with sqlite3.connect(db) as con:
        names = [r[0] for r in con.execute("select name from task_run")]
        # nothing Prefect keeps (logs, task and flow runs, artifacts) names a raw file
        for table in ("log", "task_run", "flow_run", "artifact"):
            rows = [str(r) for r in con.execute(f"select * from {table}")]
            assert not [r for r in rows if "plasma_qx" in r], table
        # restricted data: no flow run or artifact names the dataset (its hash does)
        dataset_id = json.loads(result.stdout)["dataset_id"]
        for table in ("flow_run", "artifact"):
            rows = [str(r) for r in con.execute(f"select * from {table}")]
            assert not [r for r in rows if dataset_id in r], table
    convert = sorted(n for n in names if n.startswith("metabolomics_convert"))
    assert convert == [f"metabolomics_convert[run=run-00{i}]" for i in (1, 2, 3)]
    assert not [n for n in names if "qx" in n]
    # the QC table names the files by their run ids
    import pyarrow.parquet as pq

    runs = pq.read_table(next(store.rglob("qc/runs.parquet"))).to_pydict()
    assert runs["run"] == ["run-001", "run-002", "run-003"]
    assert runs["file"] == ["run-001.mzML", "run-002.mzML", "run-003.mzML"]


# the raw file names of each demo run (synthetic HEK293 data: human samples, so run ids)
DEMO_RAW_NAMES = {
    "cryoem": ("demo_map.mrc", "demo_half_map_1.mrc", "demo_half_map_2.mrc", "demo_mask.mrc"),
    "metabolomics": ("S1.mzML", "S2.mzML", "S3.mzML"),
    "screening": ("DEMO-P01_R1.csv", "DEMO-P05_R2.csv"),
    "transcriptomics": ("filtered_feature_bc_matrix.h5",),
}


def _parquet_text(path: Path) -> bytes:
    """A Parquet file's values and metadata as text: compressed pages hide what raw bytes show."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = b"".join(k + v for k, v in (table.schema.metadata or {}).items())
    return meta + table.to_pandas().to_csv().encode()


@pytest.mark.parametrize("modality", sorted(DEMO_RAW_NAMES))
def test_human_data_names_raw_files_only_in_run_ids_json(demo_store, modality):
    """Every modality (issue 22, "raw file names never travel"): a human run's raw file names
    appear in no key and no file of the store (tables, Zarr attributes, metadata.jsonld, the
    RO-Crate, the QC report, the catalog) but the version's _meta/run_ids.json.  On main, the
    cryo-EM, screening and transcriptomics demos named their files in all of these."""
    (version,) = demo_store.glob(f"*/{modality}/*/v1")
    recorded = json.loads((version / "_meta" / "run_ids.json").read_text())["run_ids"]
    names = DEMO_RAW_NAMES[modality]
    assert set(names) <= {v["name"] for v in recorded.values()}
    assert all(re.fullmatch(r"run-\d{3}", rid) for rid in recorded)
    leaks = []
    for path, body in everything_under(demo_store):
        if path.endswith("/_meta/run_ids.json"):
            continue
        if path.endswith(".parquet") and body:
            body += _parquet_text(Path(path))
        leaks += [(n, path) for n in names if n in path or n.encode() in body]
    assert not leaks, leaks[:10]
    # the metadata lists each sample's files by run id
    jsonld = json.loads((version / "metadata.jsonld").read_text())
    listed = [
        f
        for s in jsonld["binds:sample"]
        for f in s.get("binds:sampleAttributes", {}).get("files", [])
    ]
    assert set(listed) <= set(recorded)
    assert listed or modality in ("cryoem", "transcriptomics")  # their demos list no files
