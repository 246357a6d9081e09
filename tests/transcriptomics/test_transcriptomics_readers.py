"""Readers on the real shared files and on small synthetic variants of them (bad input too)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from pipelines.errors import InputError
from pipelines.modalities.transcriptomics import readers
from pipelines.modalities.transcriptomics.demo import write_10x_h5


def test_v3_h5_and_its_mtx_twin_give_identical_counts(tx_data):
    h5 = readers.read_10x_h5(tx_data / "10x_v3_GRCh38chr21" / "filtered_feature_bc_matrix.h5")
    mtx = readers.read_10x_mtx(tx_data / "10x_v3_GRCh38chr21" / "filtered_feature_bc_matrix")
    a, b = h5.adata, mtx.adata
    assert a.shape == b.shape == (1107, 507)
    assert list(a.obs_names) == list(b.obs_names)
    assert list(a.var_names) == list(b.var_names)
    assert (a.X != b.X).nnz == 0
    assert a.X.nnz == 23866 and int(a.X.sum()) == 41549
    assert a.var_names[0].startswith("ENSG") and a.var["feature_name"].iloc[0] == "CH507-9B2.2"
    assert h5.facts["assay_ontology_term_id"] == "EFO:0009922"
    assert h5.facts["layout"] == "10x_h5_v3" and mtx.facts["layout"] == "10x_mtx_v3"


def test_v2_pbmc_mtx_uses_symbols_because_ids_are_placeholders(tx_data):
    loaded = readers.read_10x_mtx(tx_data / "10x_v2_pbmc_small")
    adata = loaded.adata
    assert adata.shape == (80, 240)
    assert adata.X.nnz == 4814
    assert "MS4A1" in adata.var_names and adata.var_names.is_unique
    assert set(adata.var["gene_ids"]) == {"ENSGXXXXXX"}
    assert "ENSGXXXXXX" in loaded.facts["gene_ids_not_unique"]
    assert loaded.facts["layout"] == "10x_mtx_v2"


def _legacy_v2_h5(path: Path, X: sp.csr_matrix, genome: str = "GRCh38") -> Path:
    """Cell Ranger 2 layout: /<genome>/{data,indices,indptr,shape,barcodes,genes,gene_names}."""
    M = X.T.tocsc()
    with h5py.File(path, "w") as f:
        g = f.create_group(genome)
        g["data"], g["indices"], g["indptr"] = M.data.astype(np.int32), M.indices, M.indptr
        g["shape"] = np.array(M.shape, dtype=np.int32)
        g["barcodes"] = np.array([f"AAAC{i:012d}-1" for i in range(X.shape[0])], dtype="S")
        g["genes"] = np.array([f"ENSG{i:011d}" for i in range(X.shape[1])], dtype="S")
        g["gene_names"] = np.array([f"G{i}" for i in range(X.shape[1])], dtype="S")
    return path


def test_legacy_v2_h5_with_a_genome_group(tmp_path):
    X = sp.random(30, 12, density=0.4, format="csr", random_state=1)
    X.data = np.ceil(X.data * 9)
    loaded = readers.read_10x_h5(_legacy_v2_h5(tmp_path / "v2.h5", X))
    assert loaded.facts["layout"] == "10x_h5_v2"
    assert loaded.adata.shape == (30, 12)
    assert np.array_equal(loaded.adata.X.toarray(), X.toarray())
    assert loaded.adata.var["genome"].iloc[0] == "GRCh38"


def test_multimodal_h5_keeps_antibody_capture_apart(tmp_path):
    rng = np.random.default_rng(3)
    X = sp.csr_matrix(rng.poisson(2.0, size=(25, 8)).astype(np.int32))
    path = write_10x_h5(
        tmp_path / "mm.h5",
        X,
        symbols=np.array([f"G{i}" for i in range(6)] + ["CD3", "CD19"]),
        barcodes=[f"BC{i:03d}-1" for i in range(25)],
        feature_types=["Gene Expression"] * 6 + ["Antibody Capture"] * 2,
        ids=[f"ENSG{i:011d}" for i in range(6)] + ["CD3_TotalSeqB", "CD19_TotalSeqB"],
    )
    gex, info = readers.split_feature_types(readers.read_10x_h5(path).adata)
    assert gex.n_vars == 6 and set(gex.var["feature_types"]) == {"Gene Expression"}
    adt = gex.obsm["antibody_capture"]
    assert list(adt.columns) == ["CD3_TotalSeqB", "CD19_TotalSeqB"]
    assert np.array_equal(adt.to_numpy(), X[:, 6:].toarray())
    assert info["antibody_capture"]["names"] == ["CD3", "CD19"]


def test_h5ad_prefers_counts_layer_and_refuses_normalised_x(tmp_path, tx_data):
    real = readers.read_10x_h5(
        tx_data / "10x_v3_GRCh38chr21" / "filtered_feature_bc_matrix.h5"
    ).adata
    normalised = real.copy()
    normalised.layers["counts"] = real.X.copy()
    normalised.X = real.X.multiply(1 / np.maximum(real.X.sum(axis=1), 1)).tocsr()
    normalised.write_h5ad(tmp_path / "with_counts.h5ad")
    back = readers.read_h5ad_counts(tmp_path / "with_counts.h5ad")
    assert back.facts["counts_from"] == "layers['counts']"
    assert (back.adata.X != real.X).nnz == 0
    del normalised.layers["counts"]
    normalised.write_h5ad(tmp_path / "normalised.h5ad")
    with pytest.raises(InputError) as err:
        readers.read_h5ad_counts(tmp_path / "normalised.h5ad")
    p = err.value.problems[0]
    assert p.file == "normalised.h5ad" and "not an integer" in p.message
    assert p.where.startswith("X: barcode ") and ", gene ENSG" in p.where


# ----------------------------------------------------------------------------- bad input
def test_truncated_h5_is_reported_as_corrupt(tmp_path, tx_data):
    src = (tx_data / "10x_v3_GRCh38chr21" / "filtered_feature_bc_matrix.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(src[: len(src) // 3])
    with pytest.raises(InputError) as err:
        readers.read_10x_h5(tmp_path / "cut.h5")
    p = err.value.problems[0]
    assert (
        p.file == "cut.h5"
        and "not a readable HDF5 file" in p.message
        and "corrupt or truncated" in p.hint
    )


def test_hdf5_that_is_not_10x_says_what_it_expected(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["images/stack"] = np.zeros((2, 2))
    with pytest.raises(InputError) as err:
        readers.read_10x_h5(tmp_path / "other.h5")
    p = err.value.problems[0]
    assert "not a 10x feature-barcode matrix" in p.message and "['images']" in p.message
    assert "filtered_feature_bc_matrix.h5" in p.hint


def test_float_counts_name_barcode_and_gene(tmp_path):
    X = sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 1]], dtype=np.float32))
    path = write_10x_h5(
        tmp_path / "f.h5",
        X,
        symbols=np.array(["A", "B", "C"]),
        barcodes=["AC-1", "GT-1"],
        ids=["E1", "E2", "E3"],
    )
    with h5py.File(path, "r+") as f:  # a normalised matrix saved in the 10x layout
        del f["matrix/data"]
        f["matrix/data"] = np.array([1.0, 2.0, 2.5, 1.0], dtype=np.float32)
    with pytest.raises(InputError) as err:
        readers.read_10x_h5(path)
    p = err.value.problems[0]
    assert "2.5 is not an integer" in p.message
    assert p.where == "matrix: barcode GT-1, gene E2"


def test_h5_shape_disagreeing_with_barcodes(tmp_path):
    X = sp.csr_matrix(np.eye(3, dtype=np.int32))
    path = write_10x_h5(
        tmp_path / "s.h5",
        X,
        symbols=np.array(["A", "B", "C"]),
        barcodes=["A-1", "C-1", "G-1"],
        ids=["E1", "E2", "E3"],
    )
    with h5py.File(path, "r+") as f:
        del f["matrix/barcodes"]
        f["matrix/barcodes"] = np.array([b"A-1", b"C-1"])
    with pytest.raises(InputError) as err:
        readers.read_10x_h5(path)
    assert "shape says 3 barcodes but 'barcodes' has 2" in str(err.value)


def _copy_triplet(tx_data: Path, dest: Path) -> Path:
    src = tx_data / "10x_v3_GRCh38chr21" / "filtered_feature_bc_matrix"
    dest.mkdir(parents=True)
    for f in src.iterdir():
        shutil.copyfile(f, dest / f.name)
    return dest


def test_mtx_with_a_missing_barcode_line(tmp_path, tx_data):
    folder = _copy_triplet(tx_data, tmp_path / "mtx")
    lines = gzip.decompress((folder / "barcodes.tsv.gz").read_bytes()).splitlines(keepends=True)
    (folder / "barcodes.tsv.gz").write_bytes(gzip.compress(b"".join(lines[:-1])))
    with pytest.raises(InputError) as err:
        readers.read_10x_mtx(folder)
    p = err.value.problems[0]
    assert p.file == "matrix.mtx.gz"
    assert p.message == "the matrix has 1107 columns (barcodes) but barcodes.tsv.gz has 1106 lines"


def test_mtx_with_duplicate_barcodes(tmp_path, tx_data):
    folder = _copy_triplet(tx_data, tmp_path / "mtx")
    lines = gzip.decompress((folder / "barcodes.tsv.gz").read_bytes()).splitlines(keepends=True)
    lines[5] = lines[2]
    (folder / "barcodes.tsv.gz").write_bytes(gzip.compress(b"".join(lines)))
    with pytest.raises(InputError) as err:
        readers.read_10x_mtx(folder)
    p = err.value.problems[0]
    dup = lines[2].decode().strip()
    assert f"{dup!r} appears 2 times" in p.message
    assert p.file == "barcodes.tsv.gz" and p.where == "line 6"


def test_incomplete_triplet_lists_what_is_there(tmp_path, tx_data):
    folder = _copy_triplet(tx_data, tmp_path / "mtx")
    (folder / "features.tsv.gz").unlink()
    with pytest.raises(InputError) as err:
        readers.read_10x_mtx(folder)
    assert "found ['barcodes.tsv.gz', 'matrix.mtx.gz']" in err.value.problems[0].message


def test_h5ad_reader_accepts_the_published_zarr_layout(tmp_path):
    """What we write (counts in layers['counts']) is what we can read back as input."""
    X = sp.csr_matrix(np.array([[1, 0], [2, 5]], dtype=np.float32))
    a = ad.AnnData(X=X.copy())
    a.obs_names, a.var_names = ["c1", "c2"], ["g1", "g2"]
    a.layers["counts"] = X.copy()
    a.X = X * 0.5
    a.write_h5ad(tmp_path / "x.h5ad")
    loaded = readers.read_h5ad_counts(tmp_path / "x.h5ad")
    assert np.array_equal(loaded.adata.X.toarray(), X.toarray())


# ----------------------------------------------------------------------------- values never changed silently
def _rewrite_entry(lines: list[bytes], value: bytes) -> tuple[int, bytes, bytes]:
    """Put ``value`` in the first entry line of a MatrixMarket file; (1-based line, row, col)."""
    size_line = next(i for i, ln in enumerate(lines) if not ln.startswith(b"%"))
    k = size_line + 6  # an entry a few lines in
    row, col, _ = lines[k].split()
    lines[k] = row + b" " + col + b" " + value + b"\n"
    return k + 1, row, col


def test_mtx_coordinate_integer_holding_a_fraction_is_refused(tmp_path, tx_data):
    """scipy reads an 'integer' MatrixMarket entry 2.5 as 2: the value is kept and refused."""
    folder = _copy_triplet(tx_data, tmp_path / "mtx")
    lines = gzip.decompress((folder / "matrix.mtx.gz").read_bytes()).splitlines(keepends=True)
    assert b"coordinate integer" in lines[0]
    line, row, col = _rewrite_entry(lines, b"2.5")
    (folder / "matrix.mtx.gz").write_bytes(gzip.compress(b"".join(lines)))
    with pytest.raises(InputError) as err:
        readers.read_10x_mtx(folder)
    p = err.value.problems[0]
    assert p.file == "matrix.mtx.gz" and p.message.startswith("value 2.5 is not an integer")
    barcodes = gzip.decompress((folder / "barcodes.tsv.gz").read_bytes()).decode().split()
    assert p.where.startswith(
        f"line {line}, row {int(row)}, column {int(col)} (matrix: barcode "
        f"{barcodes[int(col) - 1]}, gene ENSG"
    ), p.where


def test_legacy_plain_mtx_with_a_fraction_is_refused(tmp_path, tx_data):
    folder = tmp_path / "v2"
    shutil.copytree(tx_data / "10x_v2_pbmc_small", folder)
    lines = (folder / "matrix.mtx").read_bytes().splitlines(keepends=True)
    line, row, col = _rewrite_entry(lines, b"1.25")
    (folder / "matrix.mtx").write_bytes(b"".join(lines))
    with pytest.raises(InputError) as err:
        readers.read_10x_mtx(folder)
    p = err.value.problems[0]
    assert p.file == "matrix.mtx" and "1.25 is not an integer" in p.message
    assert p.where.startswith(f"line {line}, row {int(row)}, column {int(col)} (matrix: barcode ")


def test_mtx_read_keeps_counts_exactly_as_scanpy_did(tx_data):
    """Reading the matrix ourselves (to see the values as written) gives scanpy's layout."""
    import scanpy as sc

    ours = readers.read_10x_mtx(tx_data / "10x_v2_pbmc_small").adata
    theirs = sc.read_10x_mtx(
        tx_data / "10x_v2_pbmc_small", var_names="gene_symbols", make_unique=True
    )
    assert ours.X.dtype == np.float32 and (ours.X != theirs.X).nnz == 0
    assert list(ours.obs_names) == list(theirs.obs_names) and list(ours.var_names) == list(
        theirs.var_names
    )


def test_h5_int32_count_float32_cannot_hold_is_refused(tmp_path):
    """scanpy turns int32 counts into float32: 20,000,001 would be published as 20,000,000."""
    X = sp.csr_matrix(np.array([[1, 0, 2], [0, 20_000_001, 1]], dtype=np.int64))
    path = write_10x_h5(
        tmp_path / "big.h5",
        X,
        symbols=np.array(["A", "B", "C"]),
        barcodes=["AC-1", "GT-1"],
        ids=["E1", "E2", "E3"],
    )
    with h5py.File(path, "r") as f:
        assert f["matrix/data"].dtype == np.int32
    with pytest.raises(InputError) as err:
        readers.read_10x_h5(path)
    p = err.value.problems[0]
    assert "above 16,777,216" in p.message and p.where == "matrix: barcode GT-1, gene E2"


def test_h5ad_fraction_float32_would_round_away_is_refused(tmp_path):
    """1.0000001 is 1.0 in float32: checked in the stored float64, it is refused."""
    X = sp.csr_matrix(np.array([[1.0, 0.0], [2.0, 1.0000001]], dtype=np.float64))
    a = ad.AnnData(X=X)
    a.obs_names, a.var_names = ["c1", "c2"], ["g1", "g2"]
    a.write_h5ad(tmp_path / "f64.h5ad")
    with pytest.raises(InputError) as err:
        readers.read_h5ad_counts(tmp_path / "f64.h5ad")
    p = err.value.problems[0]
    assert (
        p.message.startswith("value 1.0000001 is not an integer")
        and p.where == "X: barcode c2, gene g2"
    )
    ok = ad.AnnData(X=sp.csr_matrix(np.array([[1.0, 0.0], [2.0, 7.0]])))
    ok.write_h5ad(tmp_path / "ok.h5ad")
    assert readers.read_h5ad_counts(tmp_path / "ok.h5ad").adata.X.dtype == np.float32
