"""Commit a version into the store: claim -> upload -> verify -> documents -> manifest -> index.

The store's side of publishing (:mod:`pipelines.run.publishing` checks and hashes a staged dataset,
and writes the documents that describe a version); the protocol, and why each step is there:

1. The caller hashes every file of ``data/`` and ``qc/`` (sha256, and the ETag S3 will
   report). The *content digest* (sha256 over the sorted ``path size sha256`` lines, and the
   experiment metadata) is the version's identity: provenance and timestamps do not take
   part, so re-running a run folder that yields the same bytes creates no new version.
2. **Pick the version.** If the latest committed version has the same digest: nothing to do.
   Otherwise claim ``v<N>`` with an exclusive put of ``_claims/v<N>.json`` holding the digest.
   A claim holding *our* digest is our own interrupted publish: resume it.  A claim holding
   another digest belongs to a concurrent (or abandoned) publisher of other content: take the
   next number.  So one version folder only ever receives one content: never a mix.
3. **Upload** what is not already there (size + sha256/ETag checked), in parallel.
4. **Verify** every object against the staged digests (local: sha256 of the stored file; S3:
   size and the server's MD5 ETag).
5. **Commit**: the documents the caller's ``describe`` builds for the claimed version number,
   ``metadata.jsonld``, then ``manifest.json`` through ``put_if_absent`` (S3
   ``If-None-Match: *``; local ``os.link``).  A version without a manifest does not exist for
   readers.
6. **Index**: the caller's ``index`` writes the catalog row; the claim is removed.  A crash
   between 5 and 6 is repaired by the next publish of the same content, or by
   ``binds catalog --rebuild``.

Transient store faults are retried with backoff around whole steps (each step is idempotent);
a persistent fault raises the last :class:`StoreError`, and what was uploaded stays for a resume.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pipelines.errors import InputError, Problem, RunError
from pipelines.store import layout, ledger, registry
from pipelines.store.base import Store, StoreError, UploadItem
from pipelines.store.hashing import digests
from pipelines.store.lease import Lease
from pipelines.store.versions import committed_versions, read_manifest

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "binds-manifest"
MANIFEST_FORMAT_VERSION = 1


@dataclass(slots=True)
class PublishResult:
    """What ``publish`` did.  ``created`` is False when identical content was already published."""

    dataset_id: str
    version: int
    access: str
    modality: str
    prefix: str
    created: bool
    content_digest: str
    n_files: int
    bytes: int
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    store_url: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def experiment_sha256(experiment: dict[str, Any]) -> str:
    """sha256 of the validated experiment metadata, canonically serialised (sorted keys)."""
    text = json.dumps(experiment, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def content_digest(files: list[dict[str, Any]], *, experiment: dict[str, Any] | None = None) -> str:
    """Identity of a version: sha256 over sorted ``path\\tsize\\tsha256`` lines of data/ and qc/,
    then one ``experiment\\t<sha256>`` line for the metadata it publishes.

    So a corrected licence, organism or title is a new version, while provenance (times,
    software versions, run ids) never makes one.
    """
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f["path"]):
        h.update(f"{f['path']}\t{f['size']}\t{f['sha256']}\n".encode())
    if experiment is not None:
        h.update(f"experiment\t{experiment_sha256(experiment)}\n".encode())
    return "sha256:" + h.hexdigest()


def with_expected_etags(
    items: list[UploadItem], store: Store, *, workers: int = 4
) -> list[UploadItem]:
    """The items with the ETag the store will report (S3: MD5, or multipart MD5-of-MD5s)."""
    if not store.supports_etag_md5:
        return items
    from pipelines.store import s3 as s3mod

    def one(it: UploadItem) -> UploadItem:
        _, _, etag = digests(
            it.path,
            multipart_threshold=s3mod.MULTIPART_THRESHOLD,
            multipart_chunk=s3mod.MULTIPART_CHUNK,
            sha256=False,
        )
        return replace(it, etag=etag)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, items))


@dataclass(frozen=True, slots=True)
class Submission:
    """One version to commit: where it goes, its files, and what its manifest says of it."""

    access: str
    modality: str
    dataset_id: str
    #: the files, keys relative to the version folder (``data/...``, ``qc/...``), hashed
    items: list[UploadItem]
    content_digest: str
    request_id: str
    title: str
    experiment_sha256: str
    #: the QC metrics (``qc/metrics.json``), copied into the manifest for the catalog
    qc: dict[str, Any]
    #: which acquisition session (run folder) the version comes from: sha256 of the run
    #: folder's name; a dataset's versions all come from one session unless a curator says
    session: str | None = None
    #: a curator's reason to add a version despite another owner request or session (ledger)
    override_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Draft:
    """The version being committed, as the documents that describe it see it."""

    dataset_id: str
    version: int
    files: list[dict[str, Any]]  # path, size, sha256 of every file (the manifest's "files")
    created: str  # ISO 8601, UTC, "Z"
    content_digest: str
    location: str  # the version folder's URL: store URL + "/" + version prefix


@dataclass(frozen=True, slots=True)
class Description:
    """What ``describe`` returns: the bytes written beside the data before the manifest."""

    metadata: bytes  # metadata.jsonld
    documents: list[tuple[str, bytes]]  # (path inside the version, body): listed as "documents"
    usage: dict[str, Any] | None = None  # the manifest's "usage" summary


#: builds the documents of a claimed version (they name its number, files and time)
Describe = Callable[[Draft], Description]
#: writes the catalog row of a committed version from its manifest and the manifest's bytes
Index = Callable[[dict[str, Any], bytes], None]


def commit_version(
    submission: Submission,
    store: Store,
    *,
    describe: Describe,
    index: Index | None = None,
    attempts: int = 4,
    backoff_s: float = 1.0,
    retry_budget_s: float = 300.0,
    progress: Callable[[int, int], None] | None = None,
    now: Callable[[], dt.datetime] | None = None,
) -> PublishResult:
    """Commit ``submission`` as the next version in ``store`` (the module docstring has the
    protocol), or find it already committed.

    Parameters
    ----------
    attempts
        Tries of the whole (idempotent) protocol on transient store faults, with exponential
        backoff starting at ``backoff_s``; botocore's own per-request retries come first.
    retry_budget_s
        No retry starts after this many seconds.
    progress
        Called with (bytes uploaded so far, bytes to upload).

    Raises
    ------
    InputError
        The dataset is already published at another access level (nothing is written).
    StoreError
        The store failed persistently (the last fault); what was uploaded stays for a resume.
    """
    now = now or (lambda: dt.datetime.now(dt.UTC))
    started = time.monotonic()
    attempts = max(attempts, 1)  # at least one try, whatever BINDS_PUBLISH_ATTEMPTS says
    for attempt in range(1, attempts + 1):
        try:
            return _commit_once(submission, store, describe, index, progress, now)
        except StoreError as err:
            wait = backoff_s * 2 ** (attempt - 1)
            # only transient faults are retried, and never past the budget: a store that is
            # down stays down longer than anyone should wait for a command
            if (
                not err.transient
                or attempt == attempts
                or time.monotonic() - started + wait > retry_budget_s
            ):
                raise
            log.warning(
                "store fault (%s); retrying in %.1f s (attempt %d of %d)",
                err,
                wait,
                attempt + 1,
                attempts,
            )
            time.sleep(wait)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _commit_once(
    sub: Submission,
    store: Store,
    describe: Describe,
    index: Index | None,
    progress: Callable[[int, int], None] | None,
    now: Callable[[], dt.datetime],
) -> PublishResult:
    access, modality, dataset_id, digest = (
        sub.access,
        sub.modality,
        sub.dataset_id,
        sub.content_digest,
    )
    prefix = layout.dataset_prefix(access, modality, dataset_id)
    result = PublishResult(
        dataset_id=dataset_id,
        version=0,
        access=access,
        modality=modality,
        prefix=prefix,
        created=False,
        content_digest=digest,
        n_files=len(sub.items),
        bytes=sum(it.size for it in sub.items),
        store_url=store.url,
    )

    # one publisher of this dataset at a time, from any machine (a lease in the store itself)
    with Lease(store, dataset_id, on_wait=lambda text: log.info("%s", text)) as lease:
        versions = committed_versions(store, prefix)
        latest = read_manifest(store, prefix, versions[-1]) if versions else None
        overridden = _check_identity(store, sub, latest, versions)
        if (
            latest is not None
            and latest.get("content_digest") != digest
            and store.is_own(f"{prefix}v{versions[-1]}/{layout.MANIFEST}")
        ):
            # a publisher killed between its commit and its records left the latest version
            # without ledger entry or catalog row: the next publisher completes them (a few
            # existence checks), so that every version but the newest is always recorded
            _ensure_recorded(store, latest, index)
        if latest is not None and latest.get("content_digest") == digest:
            result.version = versions[-1]
            result.notes.append(
                f"identical content is already published as v{versions[-1]}: no new version"
            )
            _ensure_recorded(store, latest, index)
            return result

        version = _claim_version(store, prefix, digest, start=(versions[-1] + 1) if versions else 1)
        if isinstance(version, dict):  # committed meanwhile (a publisher without a lease)
            result.version = version["version"]
            result.notes.append(
                f"identical content was just published as v{result.version}: no new version"
            )
            _ensure_recorded(store, version, index)
            return result
        result.version = version
        vprefix = f"{prefix}v{version}/"
        lease.check()
        upload_and_verify(store, vprefix, sub.items, result, progress)
        lease.check()  # never write the documents and the commit after losing the lease
        manifest, manifest_bytes = _commit(sub, store, result, describe, now)
        if result.created and overridden:
            ledger.append(
                store,
                access,
                {
                    "kind": "override",
                    "dataset_id": dataset_id,
                    "version": version,
                    "modality": modality,
                    "request_id": sub.request_id,
                    "reason": sub.override_reason,
                    "overrides": overridden,
                },
            )
            result.notes.append(f"curator override recorded in the ledger ({overridden})")
        _ensure_recorded(store, manifest, index, manifest_bytes=manifest_bytes)
        try:
            store.delete(layout.claim_key(access, modality, dataset_id, version))
        except StoreError as err:  # harmless leftover: the manifest decides
            log.warning("could not remove the claim of v%d: %s", version, err)
        return result


def upload_and_verify(
    store: Store,
    vprefix: str,
    items: list[UploadItem],
    result: PublishResult,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Steps 3 and 4: upload what is not there yet, then check every object of the version."""
    upload = [
        UploadItem(key=vprefix + it.key, path=it.path, size=it.size, sha256=it.sha256, etag=it.etag)
        for it in items
    ]
    total = result.bytes
    store.remove_stale_temporaries(vprefix)
    present = {info.key: info for info in store.list_prefix(vprefix)}
    # resuming: what is already there (same size) is checked with its ETag before it is skipped
    maybe_done = with_expected_etags(
        [it for it in upload if it.key in present and present[it.key].size == it.size], store
    )
    done_keys = {it.key for it in maybe_done if store.matches(it, present[it.key])}
    todo = [it for it in upload if it.key not in done_keys]
    result.uploaded_files = len(todo)
    result.uploaded_bytes = sum(it.size for it in todo)
    if len(todo) < len(upload):
        result.notes.append(
            f"resumed: {len(upload) - len(todo)} of {len(upload)} files were already uploaded"
        )
    sent = [total - result.uploaded_bytes]

    def on_bytes(n: int) -> None:
        sent[0] += n
        if progress:
            progress(sent[0], total)

    # The ETags (an MD5 pass over every file) are computed while the upload runs: the two
    # overlap, and the verification below compares them with what the server computed.
    with ThreadPoolExecutor(max_workers=1) as pool:
        expected = pool.submit(with_expected_etags, todo, store, workers=2)
        store.upload_files(todo, progress=on_bytes)
        checked = maybe_done + expected.result()

    # verify everything, not just what this attempt sent: a resumed upload is checked too
    present = {info.key: info for info in store.list_prefix(vprefix)}
    bad = [it.key for it in checked if not store.matches(it, present.get(it.key))]
    bad += [it.key for it in upload if it.key not in present]
    if bad:
        raise StoreError(
            f"{len(bad)} object(s) differ from the staged files after upload (first: {bad[0]})",
            transient=True,
        )


def _commit(
    sub: Submission,
    store: Store,
    result: PublishResult,
    describe: Describe,
    now: Callable[[], dt.datetime],
) -> tuple[dict[str, Any], bytes]:
    """Step 5: the documents, metadata.jsonld, then manifest.json by an exclusive put."""
    version, vprefix = result.version, f"{result.prefix}v{result.version}/"
    created = now().isoformat(timespec="seconds").replace("+00:00", "Z")
    files = [{"path": it.key, "size": it.size, "sha256": it.sha256} for it in sub.items]
    # Documents that describe the version (its files, digest, times: so they cannot take part
    # in the content digest), written beside its data and listed under "documents".
    described = describe(
        Draft(
            dataset_id=result.dataset_id,
            version=version,
            files=files,
            created=created,
            content_digest=sub.content_digest,
            location=f"{store.url}/{vprefix}",
        )
    )
    documents = []
    for path, body in described.documents:
        body = write_once(store, vprefix + path, body)
        documents.append(
            {"path": path, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        )
    meta_bytes = write_once(store, vprefix + layout.METADATA, described.metadata)
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_FORMAT_VERSION,
        "dataset_id": result.dataset_id,
        "version": version,
        "access": result.access,
        "modality": result.modality,
        "request_id": sub.request_id,
        "session": sub.session,
        "title": sub.title,
        "created": created,
        "content_digest": sub.content_digest,
        "experiment_sha256": sub.experiment_sha256,
        "n_files": len(files),
        "bytes": result.bytes,
        "qc": sub.qc,
        "metadata": {
            "path": layout.METADATA,
            "size": len(meta_bytes),
            "sha256": hashlib.sha256(meta_bytes).hexdigest(),
        },
        "documents": documents,
        "usage": described.usage,
        "files": files,
    }
    manifest_bytes = (json.dumps(manifest, indent=2) + "\n").encode()
    if store.put_if_absent(vprefix + layout.MANIFEST, manifest_bytes):
        result.created = True
        return manifest, manifest_bytes
    other = read_manifest(store, result.prefix, version)
    if other.get("content_digest") != sub.content_digest:  # not while claims are honoured
        raise RunError(
            f"version v{version} of {result.dataset_id} was committed by another publisher "
            "with different content; nothing of ours was committed",
            details=["publish again to create the next version"],
        )
    result.notes.append(f"v{version} was committed by a concurrent publisher of the same content")
    return other, store.get(vprefix + layout.MANIFEST)


def _check_identity(
    store: Store,
    sub: Submission,
    latest: dict[str, Any] | None,
    versions: list[int],
) -> str | None:
    """Refuse a version the dataset's owner did not publish; return what a curator overrode.

    The registry (``_registry/``, keyed by hashes) binds the dataset at its first publication
    to its request and its place (level, modality): no other level is listed or read, and no
    refusal names another level's keys, level, title or version.
    """
    did = sub.dataset_id
    binding = registry.lookup(store, did)
    if binding is None:
        # first publication; or a store from before the registry: its first version's owner
        first = (
            read_manifest(store, layout.dataset_prefix(sub.access, sub.modality, did), versions[0])
            if versions
            else None
        )
        owner = (
            str(first.get("request_id")) if first and first.get("request_id") else sub.request_id
        )
        binding = registry.bind(store, did, owner, sub.access, sub.modality)
    if not binding.at(did, sub.access, sub.modality):
        raise InputError(
            Problem(
                f"dataset id {did} is already taken by another dataset of this store; "
                f"it cannot also be published as {sub.access!r} {sub.modality}",
                file="experiment.yaml",
                where="dataset_id / access.level",
                hint="give this run its own dataset_id (or request_id); a dataset keeps the "
                "access level it was first published at: moving it is a curator's "
                "`binds move`, not a re-run",
            )
        )
    overridden = []
    if not binding.owned_by(sub.request_id):
        if not sub.override_reason:
            named = latest.get("request_id") if latest else None
            raise InputError(
                Problem(
                    f"dataset {did} belongs to request {named or '(another request)'}, "
                    f"not {sub.request_id}: nothing was published",
                    file="experiment.yaml",
                    where="request_id",
                    hint="if this is the same request, write its request_id exactly as "
                    "first published; otherwise give the run its own dataset_id; a curator "
                    "may add the version with `binds publish STAGE --curator-override REASON`",
                )
            )
        overridden.append("owner request")
    if (
        latest is not None
        and latest.get("content_digest") != sub.content_digest
        and latest.get("session")
        and sub.session
        and latest["session"] != sub.session
    ):
        if not sub.override_reason:
            raise InputError(
                Problem(
                    f"dataset {did} v{latest.get('version')} came from another run folder "
                    "(another acquisition session); this run would replace it as the latest "
                    "version: nothing was published",
                    file="experiment.yaml",
                    where="dataset_id",
                    hint=f"give this session a dataset of its own (e.g. `dataset_id: {did}-2`); "
                    "if this run folder really replaces the earlier one, a curator publishes it "
                    "with `binds publish STAGE --curator-override REASON`",
                )
            )
        overridden.append("acquisition session")
    return ", ".join(overridden) or None


def write_once(store: Store, key: str, body: bytes) -> bytes:
    """Write ``body`` at ``key`` unless it exists; return what the key holds afterwards.

    A document an interrupted publish of this same claim wrote is kept (never overwritten),
    and the manifest lists the bytes that are there.
    """
    if store.put_if_absent(key, body):
        return body
    log.info("keeping %s written by an interrupted publish of this version", key)
    return store.get(key)


def _claim_version(store: Store, prefix: str, digest: str, *, start: int) -> int | dict[str, Any]:
    """Claim the first version number from ``start`` for ``digest``; see the module docstring."""
    n = start
    claim = (json.dumps({"content_digest": digest}) + "\n").encode()
    while True:
        if store.exists(f"{prefix}v{n}/{layout.MANIFEST}"):
            m = read_manifest(store, prefix, n)
            if m.get("content_digest") == digest:
                return m
            n += 1
            continue
        key = f"{prefix}{layout.CLAIMS_DIR}/v{n}.json"
        if store.put_if_absent(key, claim):
            return n
        try:
            holder = json.loads(store.get(key)).get("content_digest")
        except KeyError:  # the claim was just released by a commit: look again
            continue
        if holder == digest:
            log.info("resuming the interrupted publish of v%d", n)
            return n
        n += 1


def _ensure_recorded(
    store: Store,
    manifest: dict[str, Any],
    index: Index | None,
    *,
    manifest_bytes: bytes | None = None,
) -> None:
    """The ledger entry and catalog row of a committed version, if a crash left them out."""
    level, did, version = manifest["access"], manifest["dataset_id"], int(manifest["version"])
    prefix = layout.version_prefix(level, manifest["modality"], did, version)
    if manifest_bytes is None:
        manifest_bytes = store.get(prefix + layout.MANIFEST)
    ledger.record_arrival(
        store,
        level,
        {
            "kind": "commit",
            "dataset_id": did,
            "version": version,
            "modality": manifest["modality"],
            "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
            "content_digest": manifest.get("content_digest"),
            "request_id": manifest.get("request_id"),
        },
    )
    key = layout.catalog_key(level, manifest["modality"], did, version)
    if index is not None and not store.exists(key):
        index(manifest, manifest_bytes)
