"""A store under ``s3://bucket/prefix``, through boto3 (AWS or any S3-compatible endpoint).

* Credentials come only from boto3's standard chain (environment, profile, role); this module
  never reads, logs or returns them.
* The endpoint comes from ``BINDS_S3_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL`` (MinIO, Ceph, a
  loopback test server); checksums are only sent/validated when required, which such
  endpoints need.
* Transient faults (connection drops, 5xx, throttling) are retried by botocore's ``standard``
  retry mode with backoff; the publish protocol retries whole steps on top of that.
* The commit is ``PutObject`` with ``If-None-Match: *``: the server refuses it (412) when the
  manifest already exists, so two publishers can never both commit one version.
* Many files go through boto3's transfer manager (s3transfer) in parallel.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
from collections.abc import Iterator, Sequence
from urllib.parse import urlparse

import botocore.session
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.loaders import Loader, create_loader

from pipelines.store.base import (
    IntegrityError,
    ObjectInfo,
    ProgressCallback,
    Store,
    StoreError,
    UploadItem,
    check_key,
)

#: Files at least this large go as multipart uploads of MULTIPART_CHUNK bytes; the publish
#: step computes the ETag S3 will report from the same numbers, to verify every upload.
MULTIPART_THRESHOLD = 64 << 20
MULTIPART_CHUNK = 64 << 20
_TRANSIENT_CODES = {
    "500",
    "502",
    "503",
    "504",
    "RequestTimeout",
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "RequestTimeTooSkewed",
    "ConditionalRequestConflict",
    "409",
}
#: the server found the body is not the bytes the request's Content-MD5 / checksum describe
_DIGEST_CODES = {"BadDigest", "XAmzContentChecksumMismatch", "InvalidDigest", "BadChecksum"}


#: keys that are committed and must never change: a version's objects, ledger entries
_LOCKED_KEY = re.compile(
    r"^[a-z]+/[a-z][a-z0-9_]*/[^/_][^/]*/v[1-9][0-9]*/|^[a-z]+/_ledger/\d{12}\.json$"
)
LOCK_MODE_ENV, LOCK_DAYS_ENV = "BINDS_OBJECT_LOCK_MODE", "BINDS_OBJECT_LOCK_DAYS"


def endpoint_from_env() -> str | None:
    return os.environ.get("BINDS_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None


def parse_s3_url(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URL: {url!r}")
    prefix = parsed.path.strip("/")
    return parsed.netloc, (prefix + "/") if prefix else ""


# one parsed copy of botocore's service models per data path, for every client of the process
_MODEL_LOADERS: dict[str | None, Loader] = {}
_MODEL_LOADERS_LOCK = threading.Lock()


def s3_client(endpoint_url: str | None, config: Config):
    """An S3 client from a session of its own, sharing the parsed service models.

    Each client resolves credentials, profile and region afresh from the environment (a reader
    and a writer in one process may hold different ones). Only the models are shared: with a
    loader of its own, a session re-parses the S3 model and endpoint rules, ~0.15 s of CPU for
    every store opened (the data service, the CLI and a publish open several).
    """
    session = botocore.session.Session()
    data_path = session.get_config_variable("data_path")
    with _MODEL_LOADERS_LOCK:
        loader = _MODEL_LOADERS.get(data_path)
        if loader is None:
            loader = _MODEL_LOADERS[data_path] = create_loader(data_path)
    session.register_component("data_loader", loader)
    return session.create_client("s3", endpoint_url=endpoint_url, config=config)


class S3Store(Store):
    """Keys under ``s3://bucket/prefix``.

    Parameters
    ----------
    url
        ``s3://bucket`` or ``s3://bucket/some/prefix``.
    endpoint_url
        Default: ``BINDS_S3_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL``; AWS itself when unset.
    max_concurrency
        Parallel transfers for :meth:`upload_files`.
    max_attempts
        botocore retry attempts per request (standard mode, exponential backoff with jitter);
        default ``BINDS_S3_MAX_ATTEMPTS`` or 8.
    """

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        read_only: bool = False,
        max_concurrency: int = 16,
        max_attempts: int | None = None,
        connect_timeout: float = 5,
        read_timeout: float = 30,
    ) -> None:
        super().__init__(read_only=read_only)
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.endpoint_url = endpoint_url or endpoint_from_env()
        self.max_concurrency = max_concurrency
        self._lock: dict[str, str | int] | None = None
        self._lock_known = False
        if max_attempts is None:
            max_attempts = int(os.environ.get("BINDS_S3_MAX_ATTEMPTS", "8"))
        config = Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max(10, max_concurrency * 2),
            # MinIO, Ceph and older gateways reject the newer default integrity headers.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self.client = s3_client(self.endpoint_url, config)
        self.transfer_config = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_CHUNK,
            max_concurrency=max_concurrency,
            use_threads=True,
        )

    @property
    def supports_etag_md5(self) -> bool:
        return True

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _error(self, err: Exception, action: str, key: str = "") -> StoreError:
        where = f"s3://{self.bucket}/{self.prefix}{key}"
        if isinstance(err, NoCredentialsError):
            return StoreError(
                f"{action} {where}: no AWS credentials found (set AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run where a role is attached)"
            )
        if isinstance(err, ClientError):
            code = str(err.response.get("Error", {}).get("Code", ""))
            status = str(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            msg = err.response.get("Error", {}).get("Message", "")
            if code == "NoSuchBucket":
                return StoreError(f"{action} {where}: bucket {self.bucket!r} does not exist")
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                # a refusal names the store, never the key: the key path names the level and
                # the dataset the caller may not see
                return StoreError(
                    f"{action} in s3://{self.bucket}/{self.prefix}: access denied ({code}); "
                    "check the credentials and the bucket policy for this prefix",
                    denied=True,
                )
            transient = code in _TRANSIENT_CODES or status.startswith("5")
            return StoreError(
                f"{action} {where}: {code or status} {msg}".strip(), transient=transient
            )
        if isinstance(
            err,
            (
                EndpointConnectionError,
                ConnectionClosedError,
                ReadTimeoutError,
                BotoCoreError,
                OSError,
            ),
        ):
            ep = self.endpoint_url or "AWS"
            return StoreError(
                f"{action} {where}: cannot reach the S3 endpoint {ep} ({type(err).__name__})",
                transient=True,
            )
        return StoreError(f"{action} {where}: {err}")

    # -- reads ---------------------------------------------------------------------------
    def _body(self, key: str):
        """The streaming body of ``key``; ``KeyError`` when absent, ``StoreError`` otherwise."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise KeyError(key) from None
            raise self._error(err, "reading", key) from None
        except (BotoCoreError, OSError) as err:
            raise self._error(err, "reading", key) from None

    def get(self, key: str) -> bytes:
        return b"".join(self.open_read(key))

    def open_read(self, key: str, *, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        body = self._body(key)
        try:
            yield from body.iter_chunks(chunk_size)
        except (BotoCoreError, OSError) as err:
            raise self._error(err, "reading", key) from None
        finally:
            body.close()

    def head(self, key: str) -> ObjectInfo | None:
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if str(err.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._error(err, "checking", key) from None
        except (BotoCoreError, OSError) as err:
            raise self._error(err, "checking", key) from None
        return ObjectInfo(key, r["ContentLength"], r.get("ETag", "").strip('"') or None)

    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]:
        full = self.prefix + prefix
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    yield ObjectInfo(
                        obj["Key"][len(self.prefix) :],
                        obj["Size"],
                        obj.get("ETag", "").strip('"') or None,
                    )
        except (ClientError, BotoCoreError, OSError) as err:
            raise self._error(err, "listing", prefix) from None

    def list_dirs(self, prefix: str) -> list[str]:
        full = self.prefix + prefix
        names: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full, Delimiter="/"
            )
            for page in pages:
                names += [
                    cp["Prefix"][len(full) :].rstrip("/") for cp in page.get("CommonPrefixes", [])
                ]
        except (ClientError, BotoCoreError, OSError) as err:
            raise self._error(err, "listing", prefix) from None
        return sorted(names)

    # -- object lock ---------------------------------------------------------------------
    def object_lock(self) -> dict[str, str | int] | None:
        """``{"mode", "days"}`` when the bucket has Object Lock enabled.

        The retention is the operator's (``BINDS_OBJECT_LOCK_MODE`` GOVERNANCE or COMPLIANCE,
        ``BINDS_OBJECT_LOCK_DAYS``), else the bucket's default rule, else GOVERNANCE for 1 day.
        """
        if self._lock_known:
            return self._lock
        lock: dict[str, str | int] | None = None
        try:
            conf = self.client.get_object_lock_configuration(Bucket=self.bucket)
            conf = conf.get("ObjectLockConfiguration", {})
            if conf.get("ObjectLockEnabled") == "Enabled":
                rule = conf.get("Rule", {}).get("DefaultRetention", {})
                lock = {
                    "mode": (
                        os.environ.get(LOCK_MODE_ENV) or rule.get("Mode") or "GOVERNANCE"
                    ).upper(),
                    "days": int(os.environ.get(LOCK_DAYS_ENV) or rule.get("Days") or 1),
                }
        except ClientError:
            lock = None  # no lock configuration (or not allowed to read it): no retention
        except (BotoCoreError, OSError) as err:
            raise self._error(err, "checking Object Lock of", "") from None
        self._lock, self._lock_known = lock, True
        return lock

    def _retention_args(self, key: str) -> dict[str, object]:
        lock = self.object_lock() if _LOCKED_KEY.match(key) else None
        if not lock:
            return {}
        until = dt.datetime.now(dt.UTC) + dt.timedelta(days=int(lock["days"]))
        # S3 wants a checksum with every locked write (Content-MD5 or a flexible checksum)
        return {
            "ObjectLockMode": str(lock["mode"]),
            "ObjectLockRetainUntilDate": until,
            "ChecksumAlgorithm": "SHA256",
        }

    def retention(self, key: str) -> str | None:
        try:  # HEAD reports the retention (GetObjectRetention errors on objects without)
            r = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError:
            return None
        except (BotoCoreError, OSError) as err:
            raise self._error(err, "checking the retention of", key) from None
        until = r.get("ObjectLockRetainUntilDate")
        return until.isoformat() if until else None

    # -- writes ----------------------------------------------------------------------------
    def put(self, key: str, data: bytes) -> None:
        self._check_writable()
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, **self._retention_args(key)
            )
        except (ClientError, BotoCoreError, OSError) as err:
            raise self._error(err, "writing", key) from None

    def put_checked(self, key: str, data: bytes, *, sha256: str, read_back: bool = False) -> str:
        """One PUT that the server checks: ``Content-MD5`` (S3, MinIO, Ceph refuse a body that
        does not match it: BadDigest) and ``x-amz-checksum-sha256`` (S3 and MinIO check it and
        keep it); then the answer is checked too: the ETag of a single-part PUT is the MD5 of
        the bytes the server stored (servers that ignore Content-MD5, such as moto, are caught
        here), a returned sha256 checksum must be the manifest's.  No read-back unless
        ``read_back``."""
        import base64
        import hashlib

        self._check_writable()
        md5 = hashlib.md5(data, usedforsecurity=False)
        sha_b64 = base64.b64encode(bytes.fromhex(sha256)).decode()
        try:
            answer = self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentMD5=base64.b64encode(md5.digest()).decode(),
                ChecksumSHA256=sha_b64,
                **self._retention_args(key),
            )
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in _DIGEST_CODES:
                raise IntegrityError(
                    f"s3://{self.bucket}/{self._key(key)}: the server refused the body ({code}: "
                    "it is not the bytes sent)"
                ) from None
            raise self._error(err, "writing", key) from None
        except (BotoCoreError, OSError) as err:
            raise self._error(err, "writing", key) from None
        check_put_answer(answer, key, md5.hexdigest(), sha_b64)
        if read_back:
            return self.check_read_back(key, len(data), sha256)
        return "checked by the server (Content-MD5, sha256 checksum) and its answer"

    def put_if_absent(self, key: str, data: bytes) -> bool:
        self._check_writable()
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                IfNoneMatch="*",
                **self._retention_args(key),
            )
            return True
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "PreconditionFailed" or status == 412:
                return False
            raise self._error(err, "committing", key) from None
        except (BotoCoreError, OSError) as err:
            raise self._error(err, "committing", key) from None

    def upload_files(
        self, items: Sequence[UploadItem], *, progress: ProgressCallback | None = None
    ) -> None:
        self._check_writable()
        if not items:
            return
        subscribers = [_Progress(progress)] if progress else None
        try:
            with create_transfer_manager(self.client, self.transfer_config) as manager:
                futures = [
                    manager.upload(
                        str(it.path),
                        self.bucket,
                        self._key(it.key),
                        extra_args={
                            "Metadata": {"sha256": it.sha256},
                            **self._retention_args(it.key),
                        },
                        subscribers=subscribers,
                    )
                    for it in items
                ]
                errors = []
                for fut in futures:
                    try:
                        fut.result()
                    except Exception as err:
                        errors.append(err)
                if errors:
                    raise errors[0]
        except StoreError:
            raise
        except (ClientError, BotoCoreError, OSError) as err:
            raise self._error(err, "uploading", items[0].key.rsplit("/", 1)[0] + "/") from None
        except Exception as err:  # s3transfer wraps some faults in its own exceptions
            raise StoreError(
                f"uploading to {self.url}: {type(err).__name__}: {err}", transient=True
            ) from None

    def delete(self, key: str) -> None:
        self._check_writable()
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError, OSError) as err:
            raise self._error(err, "deleting", key) from None

    def check_writable(self) -> None:
        """Bucket reachable, credentials accepted, writes allowed: a probe with few retries
        and short timeouts (an unreachable endpoint fails in ~15 s, not after the compute)."""
        import uuid

        self._check_writable()
        quick = s3_client(
            self.endpoint_url,
            Config(
                retries={"mode": "standard", "max_attempts": 2},
                connect_timeout=3,
                read_timeout=10,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        key = f"{self.PROBE_PREFIX}{uuid.uuid4().hex}"
        try:
            quick.head_bucket(Bucket=self.bucket)
            quick.put_object(Bucket=self.bucket, Key=self._key(key), Body=b"binds write probe\n")
            quick.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError, OSError) as err:
            if isinstance(err, ClientError) and str(err.response.get("Error", {}).get("Code")) in (
                "404",
                "NotFound",
            ):
                raise StoreError(
                    f"checking s3://{self.bucket}: bucket {self.bucket!r} does not exist "
                    "(create it, or fix --store)"
                ) from None
            raise self._error(err, "checking", key) from None

    def __repr__(self) -> str:
        return f"S3Store({self.url!r}, endpoint_url={self.endpoint_url!r})"


def check_put_answer(answer: dict, key: str, md5_hex: str, sha256_b64: str) -> None:
    """:class:`IntegrityError` unless a single-part PUT's answer describes the bytes sent: the
    ETag is their MD5 (not so under SSE-KMS / SSE-C: then the server's Content-MD5 check is
    the check), a sha256 checksum in the answer is the one sent."""
    etag = str(answer.get("ETag") or "").strip('"')
    encrypted = str(answer.get("ServerSideEncryption") or "").startswith("aws:kms") or bool(
        answer.get("SSECustomerAlgorithm")
    )
    if etag and not encrypted and etag != md5_hex:
        raise IntegrityError(
            f"{key}: the server stored other bytes than those sent (ETag {etag}, MD5 of the "
            f"bytes {md5_hex})"
        )
    got = answer.get("ChecksumSHA256")
    if got and got != sha256_b64:
        raise IntegrityError(f"{key}: the server's sha256 checksum of the object is not ours")


class _Progress:
    """An s3transfer subscriber that reports bytes sent."""

    def __init__(self, callback: ProgressCallback) -> None:
        self.callback = callback

    def on_queued(self, **kwargs):
        pass

    def on_progress(self, bytes_transferred: int, **kwargs):
        self.callback(bytes_transferred)

    def on_done(self, **kwargs):
        pass
