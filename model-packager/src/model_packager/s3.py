"""The bucket: one client, retries with a time budget, and S3 errors mapped to the packager's errors.

The minio SDK retries a failed request a few times within seconds; a server restarting under
Kubernetes takes longer. Every call here is retried on connection errors and 5xx answers until
`budget` seconds have passed, then reported as Unavailable. Refused keys are CredentialsRefused at once.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from model_packager.errors import BadInput, Conflict, CredentialsRefused, Unavailable

T = TypeVar("T")
SHA256_META = "sha256"  # stored as x-amz-meta-sha256 on every object we upload
_REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken"}
_RETRYABLE = {"InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout", "OperationAborted"}
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # OVMS accepts [0-9a-z.-] only


@dataclass(frozen=True)
class Endpoint:
    url: str  # http(s)://host:port
    bucket: str
    ca_bundle: Path | None = None
    budget: float = 120.0  # seconds of retries per call

    def validate(self) -> None:
        parsed = urlparse(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path not in ("", "/"):
            raise BadInput(f"endpoint must look like http(s)://host:port, not {self.url!r}")
        if not _BUCKET.match(self.bucket) or ".." in self.bucket:
            raise BadInput(
                f"bucket name {self.bucket!r} must be 3-63 of lowercase letters, digits, dots, dashes"
            )
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise BadInput(f"CA bundle {self.ca_bundle} does not exist")


class Bucket:
    """Retried, error-mapped operations on one bucket."""

    def __init__(self, endpoint: Endpoint) -> None:
        endpoint.validate()
        access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            raise CredentialsRefused("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set")
        parsed = urlparse(endpoint.url)
        ca = str(endpoint.ca_bundle) if endpoint.ca_bundle else os.environ.get("AWS_CA_BUNDLE") or None
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=60),
            retries=urllib3.Retry(total=0),  # our own retry loop has the budget
            **({"ca_certs": ca, "cert_reqs": "CERT_REQUIRED"} if ca else {}),
        )
        self.endpoint = endpoint
        self.name = endpoint.bucket
        self.client = Minio(
            parsed.netloc,
            access_key=access,
            secret_key=secret,
            session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            secure=parsed.scheme == "https",
            http_client=http,
        )

    # -- retries ------------------------------------------------------------------------------

    def call(self, what: str, operation: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.endpoint.budget
        delay = 0.25
        while True:
            try:
                return operation()
            except S3Error as err:
                if err.code in _REFUSED:
                    raise CredentialsRefused(
                        f"{self.endpoint.url} refused the credentials ({err.code}) while trying to {what}"
                    ) from err
                if err.code not in _RETRYABLE:
                    raise
                problem: Exception = err
            except (urllib3.exceptions.HTTPError, MinioException, OSError) as err:
                cause = getattr(err, "reason", err)
                if isinstance(cause, urllib3.exceptions.SSLError):  # a wrong CA does not heal with retries
                    raise BadInput(
                        f"TLS verification of {self.endpoint.url} failed ({_short(cause)}); "
                        "pass the CA that signed its certificate with --ca-bundle"
                    ) from err
                problem = err
            if time.monotonic() + delay > deadline:
                budget = f"{self.endpoint.budget:.0f} s"
                raise Unavailable(
                    f"cannot {what} at {self.endpoint.url} within {budget}: {_short(problem)}"
                ) from problem
            time.sleep(delay)
            delay = min(delay * 2, 8.0)

    # -- operations ---------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the bucket when it does not exist yet."""
        if not self.call("check the bucket", lambda: self.client.bucket_exists(self.name)):
            try:
                self.call("create the bucket", lambda: self.client.make_bucket(self.name))
            except S3Error as err:
                if err.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def exists(self) -> bool:
        return self.call("check the bucket", lambda: self.client.bucket_exists(self.name))

    def keys(self, prefix: str) -> list[str]:
        return self.call(
            f"list {prefix}",
            lambda: [
                o.object_name for o in self.client.list_objects(self.name, prefix=prefix, recursive=True)
            ],
        )

    def stat(self, key: str) -> dict[str, Any] | None:
        """Size, ETag and our sha256 metadata of an object, or None when it does not exist."""

        def run() -> dict[str, Any] | None:
            try:
                found = self.client.stat_object(self.name, key)
            except S3Error as err:
                if err.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                    return None
                raise
            meta = {k.lower(): v for k, v in (found.metadata or {}).items()}
            return {"size": found.size, "etag": found.etag, "sha256": meta.get(f"x-amz-meta-{SHA256_META}")}

        return self.call(f"look up {key}", run)

    def read(self, key: str) -> bytes | None:
        def run() -> bytes | None:
            try:
                response = self.client.get_object(self.name, key)
            except S3Error as err:
                if err.code in ("NoSuchKey", "NoSuchObject"):
                    return None
                raise
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return self.call(f"read {key}", run)

    def read_json(self, key: str) -> dict[str, Any] | None:
        data = self.read(key)
        if data is None:
            return None
        try:
            return json.loads(data)
        except json.JSONDecodeError as err:
            raise Conflict(f"{key} in bucket {self.name} is not valid JSON") from err

    def digest(self, key: str) -> str:
        """sha256 of an object's content, streamed back from the server."""

        def run() -> str:
            response = self.client.get_object(self.name, key)
            digest = hashlib.sha256()
            try:
                for chunk in response.stream(1 << 20):
                    digest.update(chunk)
            finally:
                response.close()
                response.release_conn()
            return digest.hexdigest()

        return self.call(f"read back {key}", run)

    def upload(self, key: str, path: Path, sha256: str, progress: Any = None) -> None:
        self.call(
            f"upload {key}",
            lambda: self.client.fput_object(
                self.name, key, str(path), metadata={SHA256_META: sha256}, progress=progress
            ),
        )

    def put(self, key: str, data: bytes, *, create_only: bool = False, if_match: str | None = None) -> bool:
        """Write a small object. With create_only or if_match the write is conditional (S3 conditional
        writes: If-None-Match: * / If-Match: etag); returns False when the condition failed."""
        headers = {
            "Content-Type": "application/json"
            if key.endswith((".json", "READY", ".claim"))
            else "text/plain",
            f"x-amz-meta-{SHA256_META}": hashlib.sha256(data).hexdigest(),
            "Content-Length": str(len(data)),
        }
        if create_only:
            headers["If-None-Match"] = "*"
        if if_match:
            headers["If-Match"] = f'"{if_match}"'

        def run() -> bool:
            if not create_only and not if_match:
                self.client.put_object(
                    self.name,
                    key,
                    io.BytesIO(data),
                    len(data),
                    metadata={SHA256_META: headers[f"x-amz-meta-{SHA256_META}"]},
                )
                return True
            try:
                # The SDK has no conditional put; its request method signs and sends the headers as given.
                self.client._execute("PUT", self.name, key, body=data, headers=headers)
            except S3Error as err:
                if err.code in ("PreconditionFailed", "ConditionalRequestConflict"):
                    return False
                raise
            return True

        return self.call(f"write {key}", run)

    def remove(self, key: str) -> None:
        self.call(f"remove {key}", lambda: self.client.remove_object(self.name, key))


def _short(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:200]
