"""Fixtures of the transcriptomics tests.

Real files from ``../shared/data/transcriptomics`` are linked (not copied) into run folders made
under ``tmp_path``.  Workflow runs are expensive (a Python process per rule), so each scenario
runs once per session and several tests read it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tx_helpers import link_files, run, write_experiment

from pipelines.toolkit.stage import StagedDataset
from tests.conftest import shared_data


@pytest.fixture(scope="session")
def tx_data() -> Path:
    return shared_data("transcriptomics")


@pytest.fixture(scope="session")
def v3_run_dir(tx_data, tmp_path_factory) -> Path:
    """The real chr21 10x v3 .h5 with a human blood sample from donor D07."""
    run_dir = tmp_path_factory.mktemp("v3run") / "run"
    link_files(run_dir, [tx_data / "10x_v3_GRCh38chr21" / "filtered_feature_bc_matrix.h5"])
    return write_experiment(
        run_dir,
        samples=[
            {
                "id": "LIB-21",
                "organism": "NCBITaxon:9606",
                "tissue": "UBERON:0000178",
                "donor_id": "D07",
            }
        ],
        block={"n_pcs": 15, "n_hvg": 300},
    )


@pytest.fixture(scope="session")
def v3_stage(v3_run_dir, tmp_path_factory) -> StagedDataset:
    return run(v3_run_dir, tmp_path_factory.mktemp("v3stage"))


@pytest.fixture(scope="session")
def pasilla_run_dir(tx_data, tmp_path_factory) -> Path:
    """Pasilla counts + sample sheet with the documented suffix rule (treated1fb -> treated1)."""
    run_dir = tmp_path_factory.mktemp("pasilla") / "run"
    link_files(run_dir, sorted((tx_data / "bulk_pasilla").glob("pasilla_*")))
    return write_experiment(
        run_dir,
        samples=[{"id": "S2-DRSC", "organism": "NCBITaxon:7227"}],
        block={"bulk": {"match": "strip_suffix", "suffix": "fb"}},
    )


@pytest.fixture(scope="session")
def pasilla_stage(pasilla_run_dir, tmp_path_factory) -> StagedDataset:
    return run(pasilla_run_dir, tmp_path_factory.mktemp("pasillastage"))
