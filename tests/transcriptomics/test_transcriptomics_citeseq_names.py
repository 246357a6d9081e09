"""CITE-seq antibody names with '/' (TotalSeq: CD66a/c/e, HLA-A/B/C) survive the AnnData Zarr
write, kept exactly as values; a failure while writing is reported as one, not "failed reading".

On main the Zarr write crashed ("Forward slashes are not allowed in keys") and the message
named the input as the file being read.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from pipelines.modalities.transcriptomics import outputs
from pipelines.modalities.transcriptomics.demo import barcodes_for, synthetic_counts, write_10x_h5
from pipelines.modalities.transcriptomics.readers import key_safe, read_10x_h5, split_feature_types

AB_IDS = ["CD66a/c/e", "HLA-A/B/C", "CD3_TotalSeqB", "odd%2Fid"]
AB_NAMES = ["CD66a/c/e", "HLA-A/B/C", "CD3", "odd%2Fid"]


def _cite_h5(path: Path) -> Path:
    X, symbols, _ = synthetic_counts(n_cells=50, n_genes=30, n_types=2, seed=1)
    ab = sp.csr_matrix(np.random.default_rng(0).integers(0, 50, (50, len(AB_IDS))).astype(np.int32))
    return write_10x_h5(
        path,
        sp.hstack([X, ab]).tocsr(),
        symbols=np.array([*map(str, symbols), *AB_NAMES]),
        barcodes=barcodes_for(50, seed=1),
        feature_types=["Gene Expression"] * 30 + ["Antibody Capture"] * len(AB_IDS),
        ids=[f"ENSG{i:05d}" for i in range(30)] + AB_IDS,
    )


def test_antibody_names_with_slashes_written_and_kept_exactly(tmp_path):
    adata, info = split_feature_types(read_10x_h5(_cite_h5(tmp_path / "cite.h5")).adata)
    adata.uns["feature_types"] = info
    outputs.write_zarr(adata, tmp_path / "adata.zarr")
    back = ad.read_zarr(tmp_path / "adata.zarr")
    stored = back.uns["feature_types"]["antibody_capture"]
    assert list(stored["ids"]) == AB_IDS and list(stored["names"]) == AB_NAMES
    columns = back.obsm["antibody_capture"].columns.tolist()
    assert columns == [key_safe(i) for i in AB_IDS]
    assert [unquote(c) for c in columns] == AB_IDS  # the documented encoding reverses exactly
    assert back.obsm["antibody_capture"].to_numpy().sum() > 0


@pytest.mark.parametrize("name", ["a/b", "100%", "%2F", "plain", "a/%/b"])
def test_key_safe_is_reversible_and_slash_free(name):
    assert "/" not in key_safe(name) and unquote(key_safe(name)) == name


def test_a_crash_while_writing_is_reported_as_a_write_failure(tmp_path):
    from pipelines.run.workflow import RunningWorkflow
    from pipelines.toolkit.smk import run_step
    from pipelines.toolkit.stage import StagedDataset

    run, stage = tmp_path / "run", tmp_path / "stage"
    run.mkdir()
    (run / "cite.h5").write_text("{}")
    zarr = stage / "data" / "adata.zarr"
    smk = SimpleNamespace(
        rule="transcriptomics_singlecell",
        log=[str(tmp_path / "logs" / "sc.log")],
        input=[str(run / "cite.h5")],
        output=[str(zarr)],
        config={"stage_dir": str(stage), "run_dir": str(run)},
    )

    def load_and_write():
        json.loads((run / "cite.h5").read_text())
        (zarr / "obs").mkdir(parents=True)
        (zarr / "obs" / "zarr.json").write_text("{}")
        raise ValueError("Forward slashes are not allowed in keys")

    with pytest.raises(SystemExit) as code:
        run_step(smk, load_and_write)
    assert code.value.code == 1
    (record_file,) = (stage / "_meta" / "errors").glob("transcriptomics_singlecell-*.json")
    record = json.loads(record_file.read_text())
    assert record["output"] == "data/adata.zarr" and record["input"] is None
    wf = RunningWorkflow.__new__(RunningWorkflow)
    wf.stage, wf.smk_log, wf.rule_logs = StagedDataset(stage), tmp_path / "smk.log", []
    message = str(wf._failure(1))
    assert "failed writing data/adata.zarr" in message and "reading" not in message
