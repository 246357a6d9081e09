"""HDF5 inputs that reach outside their own file are refused before any read.

A 10x ``.h5`` (or an ``.h5ad``) can keep a dataset's values in another file (external raw
storage), link to an object of another file (external link) or map a dataset from other files
(virtual dataset); HDF5 follows each silently.  On main a 10x file whose ``features/name`` was
stored in ``/etc/passwd``-like files passed validation and published the file's lines as gene
names.  Now: exit 2 naming the file and the HDF5 object path, without quoting the target.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hostile_files import clean_10x_h5 as _clean_h5
from hostile_files import hostile_h5
from hostile_files import outside_file as _outside
from tx_helpers import write_experiment
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.errors import InputError
from pipelines.modalities.transcriptomics.readers import read_10x_h5, read_h5ad_counts
from pipelines.run.runner import check_run_dir
from pipelines.toolkit.rawfiles import hdf5_problems

KINDS = ["external_storage", "external_link", "virtual"]
WHAT = {
    "external_storage": "external raw storage",
    "external_link": "external link",
    "virtual": "virtual dataset",
}


def test_a_clean_10x_file_has_no_outside_reference(tmp_path):
    assert hdf5_problems(_clean_h5(tmp_path / "m.h5")) == []


@pytest.mark.parametrize("kind", KINDS)
def test_each_outside_reference_is_found_with_its_object_path(tmp_path, kind):
    path = hostile_h5(tmp_path / "m.h5", kind, _outside(tmp_path))
    (p,) = hdf5_problems(path)
    assert p.file == "m.h5" and p.where == "/matrix/features/name"
    assert WHAT[kind] in p.message
    assert "secret" not in str(p) and "elsewhere" not in str(p)  # never names the target


@pytest.mark.parametrize("kind", KINDS)
def test_the_reader_refuses_before_reading(tmp_path, kind):
    """Fails on main: the reader published the outside file's bytes as gene names."""
    path = hostile_h5(tmp_path / "m.h5", kind, _outside(tmp_path))
    with pytest.raises(InputError) as info:
        read_10x_h5(path)
    assert info.value.problems[0].where == "/matrix/features/name"


@pytest.mark.parametrize("kind", KINDS)
def test_h5ad_refused_too(tmp_path, kind):
    import anndata as ad
    import scipy.sparse as sp

    path = tmp_path / "cells.h5ad"
    X = sp.csr_matrix(np.arange(12, dtype=np.float32).reshape(4, 3))
    ad.AnnData(X=X).write_h5ad(path)
    outside = _outside(tmp_path)
    with h5py.File(path, "a") as f:
        if kind == "external_storage":
            f.create_dataset("uns/leak", shape=(64,), dtype="u1", external=[(str(outside), 0, 64)])
        elif kind == "external_link":
            with h5py.File(outside.with_suffix(".h5"), "w") as o:
                o["x"] = np.arange(3)
            f["uns/leak"] = h5py.ExternalLink(str(outside.with_suffix(".h5")), "/x")
        else:
            with h5py.File(outside.with_suffix(".h5"), "w") as o:
                o["x"] = np.arange(3)
            layout = h5py.VirtualLayout(shape=(3,), dtype="i8")
            layout[:] = h5py.VirtualSource(str(outside.with_suffix(".h5")), "x", shape=(3,))
            f.create_virtual_dataset("uns/leak", layout)
    with pytest.raises(InputError) as info:
        read_h5ad_counts(path)
    assert info.value.problems[0].where == "/uns/leak"


@pytest.mark.parametrize("kind", KINDS)
def test_validate_exits_2_naming_file_and_object(tmp_path, kind):
    """Fails on main: `binds validate` said ok."""
    run = write_experiment(tmp_path / "run")
    hostile_h5(run / "outs" / "filtered_feature_bc_matrix.h5", kind, _outside(tmp_path))
    with pytest.raises(InputError) as info:
        check_run_dir(run)
    assert [(p.file, p.where) for p in info.value.problems] == [
        ("outs/filtered_feature_bc_matrix.h5", "/matrix/features/name")
    ]
    result = CliRunner().invoke(app, ["validate", str(run)])
    assert result.exit_code == 2
    assert "outs/filtered_feature_bc_matrix.h5: /matrix/features/name:" in result.output
    assert "Traceback" not in result.output and "SECRET" not in result.output


def test_hdf5_by_signature_whatever_the_extension(tmp_path):
    """Any later HDF5-based format is checked too: the signature decides, not the name."""
    from pipelines.toolkit.rawfiles import raw_file_problems

    path = hostile_h5(tmp_path / "run" / "data.loom", "external_link", _outside(tmp_path))
    (p,) = raw_file_problems(tmp_path / "run", [path])
    assert p.file == "data.loom" and "external link" in p.message


@pytest.mark.slow
def test_run_refuses_and_publishes_nothing(tmp_path):
    run = write_experiment(tmp_path / "run")
    hostile_h5(run / "filtered_feature_bc_matrix.h5", "external_storage", _outside(tmp_path))
    store = tmp_path / "store"
    result = CliRunner().invoke(
        app, ["run", str(run), "--store", str(store), "--work-dir", str(tmp_path / "work")]
    )
    assert result.exit_code == 2, result.output
    assert "/matrix/features/name" in result.output
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))
    found = [p for p in tmp_path.rglob("*") if p.is_file() and b"SECRET-LINE" in p.read_bytes()]
    assert found == [tmp_path / "elsewhere" / "secret.txt"]
