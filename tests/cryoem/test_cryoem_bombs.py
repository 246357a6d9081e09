"""Compressed maps: memory planned from the decompressed size, and a map whose declared size is
past the decompression cap refused by `validate` before any data are inflated.

On main a 0.5 MB .map.gz of a 512^3 map was planned at 4x its compressed size (2 MB).
"""

from __future__ import annotations

import numpy as np
from cryoem_helpers import minimal_yaml, write_mrc
from hostile_files import gz_map

from pipelines.modalities.cryoem import preflight
from pipelines.modalities.cryoem.mrc import map_bytes, read_header
from pipelines.toolkit import limits

MiB = 1 << 20


def test_memory_plan_uses_the_decompressed_size(tmp_path):
    path = gz_map(tmp_path, tmp_path / "big.map.gz", 512)
    assert path.stat().st_size < 1 * MiB
    assert map_bytes(path) == 1024 + 512**3 * 4  # not 4x the compressed size
    assert limits.gzip_isize(path) == map_bytes(path)
    header, problems = read_header(path)
    assert problems == [] and header is not None and header.shape_zyx == (512, 512, 512)


def test_map_past_the_cap_refused_by_validate(tmp_path, monkeypatch):
    monkeypatch.setenv(limits.MAX_DECOMPRESSED_ENV, "0.25")  # 256 MiB
    run = tmp_path / "run"
    gz_map(tmp_path, run / "big.map.gz", 512)
    (run / "experiment.yaml").write_text(minimal_yaml())
    problems = preflight(run, {})
    assert len(problems) == 1
    p = problems[0]
    assert p.file == "big.map.gz" and "decompresses to more than 0.25 GiB" in p.message
    assert p.where == "header NX/NY/NZ/MODE" and "BINDS_MAX_DECOMPRESSED_GB" in p.hint


def test_plain_map_plans_its_file_size(tmp_path):
    path = write_mrc(tmp_path / "m.mrc", np.zeros((4, 4, 4), dtype=np.float32))
    assert map_bytes(path) == path.stat().st_size
