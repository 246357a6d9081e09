"""Fixtures of the metabolomics tests.

Real files are read in place from ``../shared/data/metabolomics`` (see its SOURCES.md for each
file's quirks); synthetic runs are generated here with the same code as ``binds demo``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import shared_data

# name -> what SOURCES.md says about it (spectra count, MS levels, representation, RT unit)
REAL_FILES = {
    "171103_PMA_TK_QC_04-4to5min.mzML": dict(n=507, ms1=126, ms2=381, centroid=True, rt_unit="min"),
    "FeatureFinderMetaboIdent_1_input.mzML": dict(
        n=380, ms1=380, ms2=0, centroid=False, rt_unit="s"
    ),
    "InternalCalibration_2_lockmass.mzML.gz": dict(
        n=129, ms1=21, ms2=108, centroid=True, rt_unit="min"
    ),
    "SiriusExport_1_input.mzML": dict(n=51, ms1=41, ms2=10, centroid=True, rt_unit="s"),
    "example.mzML": dict(n=11, ms1=11, ms2=0, centroid=True, rt_unit="min"),
    "example.mzML.gz": dict(n=11, ms1=11, ms2=0, centroid=True, rt_unit="min"),
    "example.mzML.idx.gz": dict(n=11, ms1=11, ms2=0, centroid=True, rt_unit="min"),
}

MINIMAL_YAML = """\
schema_version: 1
request_id: BINDS-2026-0101
title: {title}
modality: metabolomics
instrument: {{manufacturer: Thermo Fisher, model: Q Exactive}}
acquired: 2026-11-20
access: {{level: consortium}}
license: CC-BY-4.0
samples:
  - id: S1
    organism: NCBITaxon:9606
"""


@pytest.fixture(scope="session")
def real_dir() -> Path:
    return shared_data("metabolomics")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The ``binds demo`` LC-MS run folder (3 runs, targets.csv), generated once per session."""
    from pipelines.modalities.metabolomics import make_demo_run

    return make_demo_run(tmp_path_factory.mktemp("demo-lcms") / "run", seed=0)


def linked_run(
    real_dir: Path, dest: Path, names: list[str], *, title: str = "Real LC-MS slices"
) -> Path:
    """A run folder whose mzML files are symlinks to the shared real files (read in place)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        (dest / name).symlink_to(real_dir / name)
    (dest / "experiment.yaml").write_text(MINIMAL_YAML.format(title=title))
    return dest


def copy_demo(demo_run: Path, dest: Path, *, with_targets: bool = True) -> Path:
    """A writable copy of the demo run folder (tests that damage or edit files)."""
    shutil.copytree(demo_run, dest)
    if not with_targets:
        (dest / "targets.csv").unlink()
        text = (dest / "experiment.yaml").read_text().replace("  targets: targets.csv\n", "")
        (dest / "experiment.yaml").write_text(text)
    return dest
