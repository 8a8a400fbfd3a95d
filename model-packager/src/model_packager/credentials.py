"""`model-packager credentials`: create the release's generated S3 Secrets once, through the API server.

The chart's hook Job (minio.auth.generatedBy=job) runs it before helm applies anything else, so no
renderer ever holds secret material: a renderer without cluster access (Argo CD, `helm template`)
cannot regenerate keys that MinIO already uses. A Secret that exists is left as it is (HTTP 409 on
create); a missing one is created with random alphanumeric values of the given lengths (the
`secrets` module). The pod's service account authenticates (its token and the cluster's CA in
/var/run/secrets/kubernetes.io/serviceaccount, the API server at KUBERNETES_SERVICE_HOST:PORT, as
Kubernetes documents for in-cluster clients); a token refused (401/403) is exit 5.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import ssl
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3

from emotion_contract.errors import BadInput, CredentialsRefused, Unavailable
from emotion_contract.logs import Reporter

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_ALPHABET = string.ascii_letters + string.digits
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")  # a DNS subdomain (Kubernetes object names)
_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")  # what a Secret's data keys may be
#: Annotation on the Secrets this command made (not helm's: `helm uninstall` leaves them).
CREATED_BY = "emotion-serving/created-by"
#: Argo CD tracks an application's objects by the `app.kubernetes.io/instance` label these Secrets
#: carry (its default before 3.0): without these it would show them as extraneous and prune them.
GITOPS_ANNOTATIONS = {
    "argocd.argoproj.io/compare-options": "IgnoreExtraneous",
    "argocd.argoproj.io/sync-options": "Prune=false",
}


@dataclass(frozen=True)
class SecretSpec:
    """A Secret to have: its name and, per key, the length of its random value."""

    name: str
    keys: dict[str, int]

    @classmethod
    def parse(cls, text: str) -> SecretSpec:
        """`NAME=KEY:LENGTH[,KEY:LENGTH...]` (BadInput otherwise)."""
        name, sep, rest = text.partition("=")
        if not sep or not name or not rest:
            raise BadInput(f"--secret {text!r}: expected NAME=KEY:LENGTH[,KEY:LENGTH...]")
        if not _NAME.fullmatch(name):
            raise BadInput(f"--secret {text!r}: {name!r} is not a Secret name (a DNS subdomain)")
        keys: dict[str, int] = {}
        for part in rest.split(","):
            key, sep, length = part.partition(":")
            if not sep or not _KEY.fullmatch(key) or not length.isdigit() or not 8 <= int(length) <= 256:
                raise BadInput(f"--secret {text!r}: {part!r} is not KEY:LENGTH with a length of 8 to 256")
            keys[key] = int(length)
        return cls(name, keys)


@dataclass(frozen=True)
class Cluster:
    """Where the API server is and how this pod authenticates to it."""

    url: str
    token: str
    ca_file: Path
    namespace: str

    @classmethod
    def in_cluster(cls, account: Path = SERVICE_ACCOUNT) -> Cluster:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise BadInput("not in a pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set")
        try:
            token = (account / "token").read_text().strip()
            namespace = (account / "namespace").read_text().strip()
        except OSError as err:
            raise BadInput(f"no service account token in {account}: {err.strerror}") from None
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port}", token, account / "ca.crt", namespace)


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _secret_object(spec: SecretSpec, labels: dict[str, str]) -> dict[str, Any]:
    data = {key: base64.b64encode(_random(n).encode()).decode() for key, n in spec.keys.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": {CREATED_BY: "credentials Job", **GITOPS_ANNOTATIONS},
        },
        "type": "Opaque",
        "data": data,
    }


def ensure_secrets(
    cluster: Cluster, specs: list[SecretSpec], *, labels: dict[str, str], reporter: Reporter
) -> dict[str, list[str]]:
    """Create each missing Secret; leave each existing one untouched. Returns the names of both."""
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    timeout, retries = urllib3.Timeout(connect=5, read=20), urllib3.Retry(3, backoff_factor=1)
    http = urllib3.PoolManager(ssl_context=context, timeout=timeout, retries=retries)
    url = f"{cluster.url}/api/v1/namespaces/{cluster.namespace}/secrets"
    headers = {"Authorization": f"Bearer {cluster.token}", "Content-Type": "application/json"}
    done: dict[str, list[str]] = {"created": [], "kept": []}
    for spec in specs:
        body = json.dumps(_secret_object(spec, labels)).encode()
        try:
            response = http.request("POST", url, body=body, headers=headers)
        except urllib3.exceptions.HTTPError as err:
            raise Unavailable(f"the API server at {cluster.url} cannot be reached: {err}") from None
        if response.status in (401, 403):
            reason = _message(response) or f"HTTP {response.status}"
            raise CredentialsRefused(f"the API server refused to create Secret {spec.name}: {reason}")
        if response.status == 409:
            done["kept"].append(spec.name)
            reporter.info("kept", secret=spec.name)
        elif response.status == 201:
            done["created"].append(spec.name)
            reporter.info("created", secret=spec.name)
        else:
            reason = f"HTTP {response.status} {_message(response)}".strip()
            raise Unavailable(f"creating Secret {spec.name}: {reason}")
    return done


def _message(response: urllib3.BaseHTTPResponse) -> str:
    """The `message` of a Kubernetes Status answer, or nothing."""
    try:
        return str(json.loads(response.data).get("message", ""))
    except (ValueError, AttributeError):
        return ""
