"""The bucket: one client, retries with a time budget, and S3 errors mapped to the packager's errors.

The minio SDK retries a failed request a few times within seconds; a server restarting under
Kubernetes takes longer. Every call here is retried on connection errors and 5xx answers until
`budget` seconds have passed, then reported as Unavailable. Refused keys are CredentialsRefused at once.

The budget bounds each call, its requests included: a request waits for the server (connecting,
then each read) at most what is left of its call's budget, never less than MIN_REQUEST_WAIT, so a
server that accepts connections and never answers cannot hold a call past its budget plus that
margin (the SDK's own waits, 60 s a read, would). Bucket.until() lowers every call's deadline to an
outer one, `wait`'s timeout. Sending a body is not waiting: an upload that progresses is not cut off.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from emotion_contract.documents import Ready
from emotion_contract.errors import BadInput, Conflict, CredentialsRefused, Unavailable
from emotion_contract.layout import Layout

T = TypeVar("T")
SHA256_META = "sha256"  # stored as x-amz-meta-sha256 on every object we upload
_REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken"}
_RETRYABLE = {"InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout", "OperationAborted"}
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # OVMS accepts [0-9a-z.-] only
# What the minio SDK accepts as a region (it raises ValueError on anything else); the server decides
# whether it knows the region, and says so in its answer.
_REGION = re.compile(r"^(?!_)(?!-)[a-z_\d-]{1,63}(?<!-)(?<!_)$", re.IGNORECASE)
CONNECT_WAIT = 5.0  # seconds: the most a request waits to connect
READ_WAIT = 60.0  # seconds: the most a request waits for each read of the answer
#: Files up to this size are uploaded with one PUT (minio-py holds the part in memory: the default
#: model's largest file is 117 MB); larger ones go in parts of this size.
SINGLE_PUT_LIMIT = 512 * 1024 * 1024
MIN_REQUEST_WAIT = 1.0  # seconds: the least, even when its call's time is spent (the margin past it)


@dataclass(frozen=True)
class Endpoint:
    url: str  # http(s)://host:port
    bucket: str
    ca_bundle: Path | None = None
    budget: float = 120.0  # seconds of retries per call

    def validate(self) -> None:
        try:
            parsed = urlparse(self.url)  # ValueError: "Invalid IPv6 URL"
            port = parsed.port  # ValueError: "Port out of range 0-65535", a port that is not a number
        except ValueError as err:
            if "out of range" in str(err):
                number = self.url.split("//", 1)[-1].split("/", 1)[0].rsplit(":", 1)[-1]
                raise BadInput(f"endpoint port must be between 1 and 65535, not {number}") from err
            raise BadInput(f"endpoint must look like http(s)://host:port, not {self.url!r} ({err})") from err
        if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path not in ("", "/"):
            raise BadInput(f"endpoint must look like http(s)://host:port, not {self.url!r}")
        if port == 0:
            raise BadInput("endpoint port must be between 1 and 65535, not 0")
        if not math.isfinite(self.budget) or self.budget <= 0:
            raise BadInput(f"retry budget must be a positive number of seconds, not {self.budget:g}")
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
        region, region_from = _region()
        parsed = urlparse(endpoint.url)
        ca = str(endpoint.ca_bundle) if endpoint.ca_bundle else os.environ.get("AWS_CA_BUNDLE") or None
        self._http = _DeadlinePool(
            retries=urllib3.Retry(total=0),  # our own retry loop has the budget
            **({"ca_certs": ca, "cert_reqs": "CERT_REQUIRED"} if ca else {}),
        )
        self.endpoint = endpoint
        self.name = endpoint.bucket
        self.region, self._region_from = region, region_from
        self._until: float | None = None
        self.client = Minio(
            parsed.netloc,
            access_key=access,
            secret_key=secret,
            session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
            region=region,
            secure=parsed.scheme == "https",
            http_client=self._http,
        )

    # -- retries ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def until(self, deadline: float) -> Iterator[None]:
        """Within this block no call lasts past `deadline` (time.monotonic()) plus MIN_REQUEST_WAIT,
        whatever its budget: `wait` ends within its timeout."""
        outer, self._until = self._until, deadline if self._until is None else min(deadline, self._until)
        try:
            yield
        finally:
            self._until = outer

    def call(self, what: str, operation: Callable[[], T]) -> T:
        start = time.monotonic()
        deadline = start + self.endpoint.budget
        if self._until is not None:
            deadline = min(deadline, self._until)
        # Under until(), no request waits past the outer deadline plus the margin, however many calls.
        hard = None if self._until is None else self._until + MIN_REQUEST_WAIT
        delay = 0.25
        while True:
            try:
                with self._http.waiting_until(deadline, hard=hard):
                    return operation()
            except S3Error as err:
                if err.code in _REFUSED:
                    raise CredentialsRefused(
                        f"{self.endpoint.url} refused the credentials ({err.code}) while trying to {what}"
                    ) from err
                if err.code in ("AuthorizationHeaderMalformed", "BadRequest"):
                    with self._http.waiting_until(deadline, hard=hard):
                        raise self._malformed(err, what) from err
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
            now = time.monotonic()
            if now + delay > deadline:
                # The budget, or the time it had when an outer deadline (until) cut it short.
                spent = self.endpoint.budget if deadline == start + self.endpoint.budget else now - start
                raise Unavailable(
                    f"cannot {what} at {self.endpoint.url} within {_seconds(spent)}: {_short(problem)}"
                ) from problem
            time.sleep(delay)
            delay = min(delay * 2, 8.0)

    def _malformed(self, err: S3Error, what: str) -> BadInput:
        """A 400 that a retry cannot fix. A server that does not serve the region we sign for says so
        (AuthorizationHeaderMalformed, naming the region it expects), but not in answer to HEAD, which
        has no body (the SDK calls that BadRequest): then one GET asks the server for its reason."""
        reason = err
        if err.code == "BadRequest":
            try:
                self.client._execute("GET", self.name, query_params={"location": ""})
            except S3Error as answer:
                reason = answer if answer.code == "AuthorizationHeaderMalformed" else err
            except (urllib3.exceptions.HTTPError, MinioException, OSError):
                pass
        if reason.code == "AuthorizationHeaderMalformed":
            return BadInput(
                f"{self.endpoint.url} does not serve region {self.region!r} ({self._region_from}): "
                f"{reason.message}"
            )
        return BadInput(
            f"{self.endpoint.url} answered 400 Bad Request ({err.message}) while trying to {what}; "
            f"is {self.region!r} ({self._region_from}) its region?"
        )

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

    def ready(self, layout: Layout) -> Ready | None:
        """READY of the models under `layout`, parsed (None before the first publish)."""
        data = self.read(layout.ready)
        return (
            None
            if data is None
            else Ready.parse(data, where=f"{layout.ready} in bucket {self.name}", error=Conflict)
        )

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
        """One PUT for files up to SINGLE_PUT_LIMIT (a killed PUT leaves nothing behind); larger ones
        in parts, whose leftovers after a kill `abort_unfinished` removes."""
        self.call(
            f"upload {key}",
            lambda: self.client.fput_object(
                self.name,
                key,
                str(path),
                metadata={SHA256_META: sha256},
                progress=progress,
                part_size=SINGLE_PUT_LIMIT,
            ),
        )

    def abort_unfinished(self, keys: Collection[str]) -> int:
        """Abort the multipart uploads of these keys that a killed run left (they hold storage, never an
        object): one listing of the bucket's unfinished uploads; the number aborted. minio-py has no
        public call for this: its private pair is pinned with the package (requirements/constraints.txt)."""

        def run() -> int:
            listed = self.client._list_multipart_uploads(self.name).uploads
            found = [upload for upload in listed if upload.object_name in keys]
            for upload in found:
                self.client._abort_multipart_upload(self.name, upload.object_name, upload.upload_id)
            return len(found)

        return self.call("abort unfinished uploads", run)

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


class _DeadlinePool(urllib3.PoolManager):
    """The client's connection pool: each request waits for the server (to connect, then for each read)
    at most until the deadline of the call it belongs to, never less than MIN_REQUEST_WAIT, and never
    past `hard` when there is one (Bucket.call sets both, for its thread)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(timeout=urllib3.Timeout(connect=CONNECT_WAIT, read=READ_WAIT), **kwargs)
        self._calls = threading.local()

    @contextlib.contextmanager
    def waiting_until(self, deadline: float, *, hard: float | None) -> Iterator[None]:
        outer = getattr(self._calls, "limits", None)
        self._calls.limits = (deadline, hard)
        try:
            yield
        finally:
            self._calls.limits = outer

    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any) -> Any:
        limits = getattr(self._calls, "limits", None)
        if limits is not None:
            deadline, hard = limits
            now = time.monotonic()
            left = max(deadline - now, MIN_REQUEST_WAIT)
            if hard is not None:
                left = max(min(left, hard - now), 0.001)  # out of time: fail at once, not block
            kw["timeout"] = urllib3.Timeout(connect=min(CONNECT_WAIT, left), read=min(READ_WAIT, left))
        return super().urlopen(method, url, redirect=redirect, **kw)


def _region() -> tuple[str, str]:
    """The region to sign requests for, and where it came from; refused when the SDK cannot take it."""
    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        value = os.environ.get(variable)
        if value:
            if not _REGION.match(value):
                raise BadInput(
                    f"{variable} {value!r} is not a region name: 1-63 letters, digits, dashes and "
                    "underscores, not starting or ending with a dash or underscore"
                )
            return value, variable
    return "us-east-1", "the default without AWS_REGION"


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 1 else f"{value:.1f} s"


def _short(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:200]
