"""DRS ids of the store: stable, URL-safe, reversible.

A version (bundle) is ``<dataset_id>@v<N>``; a file of it is ``<dataset_id>@v<N>/<path>``
(the path as in the manifest).  The DRS id is that text in base64url without padding
(RFC 4648 section 5): only ``A-Z a-z 0-9 - _``, so it is one URL path segment, needs no
escaping and survives every client; it never changes for a committed version, since versions
are immutable.  ``binds-2026-0042-screening@v1`` -> ``YmluZHMtMjAyNi0wMDQyLXNjcmVlbmluZ0B2MQ``.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from pipelines.store.layout import DATASET_ID

_NAME = re.compile(r"^(?P<dataset>[^@/]+)@v(?P<version>[1-9][0-9]*)(?:/(?P<path>.+))?$")


@dataclass(frozen=True, slots=True)
class DrsName:
    """What a DRS id stands for: a version (``path`` None) or one file of it."""

    dataset_id: str
    version: int
    path: str | None = None

    @property
    def text(self) -> str:
        base = f"{self.dataset_id}@v{self.version}"
        return f"{base}/{self.path}" if self.path else base

    @property
    def drs_id(self) -> str:
        return base64.urlsafe_b64encode(self.text.encode()).decode().rstrip("=")

    @property
    def bundle(self) -> DrsName:
        return DrsName(self.dataset_id, self.version)


def drs_id(dataset_id: str, version: int, path: str | None = None) -> str:
    """The DRS id of a version (``path`` None) or of one of its files."""
    return DrsName(dataset_id, int(version), path).drs_id


def parse_name(text: str) -> DrsName | None:
    """``dataset@vN`` or ``dataset@vN/path`` to a :class:`DrsName`; None when malformed."""
    m = _NAME.match(text)
    if not m or not DATASET_ID.match(m["dataset"]):
        return None
    path = m["path"]
    if path and (path.startswith("/") or any(p in ("", ".", "..") for p in path.split("/"))):
        return None
    return DrsName(m["dataset"], int(m["version"]), path)


def parse_drs_id(drs_id: str) -> DrsName | None:
    """A DRS id back to what it names; None for anything that is not one of ours."""
    if not drs_id or len(drs_id) > 2048 or not re.fullmatch(r"[A-Za-z0-9_-]+", drs_id):
        return None
    try:
        text = base64.urlsafe_b64decode(drs_id + "=" * (-len(drs_id) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    name = parse_name(text)
    # one spelling per id: a different padding or trailing bits would give a second id
    return name if name is not None and name.drs_id == drs_id else None
