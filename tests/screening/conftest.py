"""Fixtures of the screening tests.

Real cellHTS2 screens are read in place from ``../shared/data/screening`` (SOURCES.md there
lists each file's quirks: KcViab's annotation ends lines with a stray tab, the TwoWayAssay
exports are ISO-8859-1 with CRLF).  Synthetic plates are written by the tests themselves
(``screening_helpers``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.modalities import screening
from tests.conftest import shared_data


@pytest.fixture(scope="session")
def kcviab() -> Path:
    return shared_data("screening") / "cellHTS2_KcViab"


@pytest.fixture(scope="session")
def twoway() -> Path:
    return shared_data("screening") / "cellHTS2_TwoWayAssay"


@pytest.fixture
def process() -> Callable[..., dict[str, Path]]:
    """``process(run_dir, block, out)``: every workflow step in this process (no Snakemake), for
    fast tests of the processing; returns the output paths.  The rules call the same functions."""

    def run(run_dir: Path, block: dict | None, out: Path) -> dict[str, Path]:
        out.mkdir(parents=True, exist_ok=True)
        raws = [
            screening.read_batch(
                run_dir=run_dir, block=block, batch=b, out=out / f"raw_{b}.parquet"
            )
            for b in range(screening.batch_count(run_dir, block))
        ]
        paths = {k: out / f"{k}.parquet" for k in ("wells", "plates", "hits", "dose_response")}
        paths["facts"] = out / "facts.json"
        screening.write_screen(
            screening.process_screen(run_dir=run_dir, block=block, raw=raws),
            wells_out=paths["wells"],
            plates_out=paths["plates"],
            hits_out=paths["hits"],
            dose_response_out=paths["dose_response"],
            facts_out=paths["facts"],
        )
        paths["raws"] = raws
        return paths

    return run
