"""pipelines.access through the data service: catalog and open (drs:// ids and id@version
against the service URL) give the same objects as the store read directly, lazily."""

from __future__ import annotations

import numpy as np
import pytest
from drs_testing import AUD, CONSORTIUM, DATASET_PREFIX

from pipelines import access
from pipelines.access.ids import drs_id
from pipelines.dataservice import audit
from pipelines.dataservice.policy import load_auth


@pytest.fixture(scope="module")
def token(issuers):
    good, es, _ = issuers
    visas = [
        good.visa(CONSORTIUM, subject="r1"),
        es.visa(DATASET_PREFIX + "ds-restricted", subject="r1"),
    ]
    return good.token("r1", audience=AUD, visas=visas)


def test_catalog_through_the_service(service, token, data_store):
    mine = access.catalog(service, token=token)
    assert sorted(mine["dataset_id"]) == ["ds-consortium", "ds-open", "ds-restricted"]
    assert mine.set_index("dataset_id").loc["ds-open", "drs_id"] == drs_id("ds-open", 1)
    direct = access.catalog(data_store)
    assert set(mine.columns) - set(direct.columns) == {"drs_id"}
    assert list(access.catalog(service)["dataset_id"]) == ["ds-open"]  # anonymous
    assert list(access.catalog(service, token=token, access="restricted")["dataset_id"]) == [
        "ds-restricted"
    ]


def test_open_through_the_service_equals_direct(service, token, data_store, auth_file):
    import anndata
    import pyarrow.dataset as ds
    import zarr

    host = service.removeprefix("http://")
    wells = access.open(f"drs://{host}/{drs_id('ds-restricted', 1)}", token=token)
    assert isinstance(wells, ds.Dataset)
    assert wells.to_table().equals(access.open("ds-restricted", store=data_store).to_table())
    via_id = access.open("ds-restricted@v1", store=service, token=token, path="data/wells.parquet")
    assert via_id.to_table(filter=ds.field("well") == "A05").num_rows == 1

    cfg = load_auth(auth_file)
    group = access.open(
        f"drs://{host}/{drs_id('ds-consortium', 1, 'data/image.ome.zarr/0')}", token=token
    )
    assert isinstance(group, zarr.Group)
    direct = access.open("ds-consortium", store=data_store, path="data/image.ome.zarr")
    arr = group["0"]  # the array's metadata: read here
    before = sum(1 for e in audit.read_entries(cfg.audit) if e["action"] == "bytes")
    assert np.array_equal(arr[0:2, :32, :32], direct["0"][0:2, :32, :32])
    reads = [e for e in audit.read_entries(cfg.audit) if e["action"] == "bytes"][before:]
    # one chunk of 2x32x32: one HTTP request (no DRS round trip), recorded for the caller
    assert (
        len(reads) == 1 and reads[0]["subject"] == "r1" and reads[0]["dataset"] == "ds-consortium"
    )
    assert np.array_equal(group["0"][:], direct["0"][:])

    adata = access.open("ds-open", store=service, path="data/adata.zarr")  # anonymous: open data
    assert isinstance(adata, anndata.AnnData) and adata.n_obs == 20
    ref = access.open("ds-open", store=data_store, path="data/adata.zarr")
    assert np.array_equal(np.asarray(adata.X[:5]), np.asarray(ref.X[:5]))
    assert list(adata.obs_names) == list(ref.obs_names)
    assert (
        access.open(
            "ds-open", store=service, path="data/wells.parquet", check_sha256=True
        ).count_rows()
        == 96
    )


def test_refusals_through_the_reader(service, token):
    with pytest.raises(access.DatasetNotFound):
        access.open("ds-restricted", store=service)  # anonymous: as if it did not exist
    with pytest.raises(access.DatasetNotFound):
        access.open("ds-embargoed", store=service, token=token)
    with pytest.raises(PermissionError):
        access.catalog(service, token=token[:-4] + "AAAA")
