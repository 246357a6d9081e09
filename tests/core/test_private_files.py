"""Every file and folder binds creates is group-private (0750 / 0640), whatever the caller's
umask: the local store (its restricted/ tree included), work folders and staged copies, the inbox
state and binds' own Prefect home (issue #23, symptom 4)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.modalities import get as get_modality
from pipelines.store import LocalStore

BINDS = str(Path(sys.executable).parent / "binds")


def _open_to_others(root: Path) -> list[str]:
    """Paths under ``root`` (root included) readable/writable by others or writable by the group."""
    bad = []
    for p in [root, *root.rglob("*")]:
        if p.is_symlink():
            continue
        mode = stat.S_IMODE(p.lstat().st_mode)
        # Snakemake's own bookkeeping (.snakemake/) is made group-writable (0660) by Snakemake
        # itself; what matters there is that others get nothing
        if mode & (0o007 if ".snakemake" in p.parts else 0o027):
            bad.append(f"{p.relative_to(root.parent)} {oct(mode)}")
    return bad


def test_local_store_writes_private_files_under_a_loose_umask(tmp_path):
    old = os.umask(0o022)
    try:
        store = LocalStore(tmp_path / "store")
        store.put("restricted/cryoem/ds-1/v1/metadata.jsonld", b"{}")
        assert store.put_if_absent("restricted/cryoem/ds-1/v1/manifest.json", b"{}")
        src = tmp_path / "src.bin"
        src.write_bytes(b"x" * 10)
        from pipelines.store import UploadItem

        store.upload_files([UploadItem("restricted/cryoem/ds-1/v1/data/a.bin", src, 10, "0")])
    finally:
        os.umask(old)
    assert _open_to_others(tmp_path / "store") == []


def test_a_stricter_operator_umask_is_kept(tmp_path):
    old = os.umask(0o077)
    try:
        LocalStore(tmp_path / "store").put("open/x/ds-1/v1/a.json", b"{}")
    finally:
        os.umask(old)
    f = tmp_path / "store" / "open" / "x" / "ds-1" / "v1" / "a.json"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE(f.parent.stat().st_mode) == 0o700


@pytest.mark.slow
def test_binds_watch_leaves_no_file_readable_by_others(tmp_path):
    """A real `binds watch --once` (Snakemake + Prefect) started with umask 022."""
    inbox = tmp_path / "inbox"
    get_modality("screening").make_demo_run(inbox / "screen-run")
    os.chmod(inbox, 0o750)
    home = tmp_path / "binds-prefect"  # created by binds itself
    env = dict(os.environ, PREFECT_HOME=str(home), BINDS_WORK_DIR=str(tmp_path / "work"))
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.run(
        [
            BINDS,
            "watch",
            str(inbox),
            "--once",
            "--settle",
            "0",
            "--cores",
            "2",
            "--store",
            str(tmp_path / "store"),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.umask(0o022),  # a login node's usual umask
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "store" / "open" / "catalog").is_dir()
    assert (inbox / ".binds-inbox.json").is_file()
    assert _open_to_others(tmp_path / "store") == []
    assert _open_to_others(tmp_path / "work") == []
    assert _open_to_others(home) == []
    assert stat.S_IMODE((inbox / ".binds-inbox.json").stat().st_mode) & 0o027 == 0
