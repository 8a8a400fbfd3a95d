"""`minio.auth.generatedBy: job` (issue 15, item 11): the release's S3 credentials are created once by
a hook Job through the API server, never rendered, so a renderer without cluster access (Argo CD)
cannot replace them.

On devstack's real API server: the rendered hook account, role and binding; the Job's own command and
arguments, run here with a token of that account (KWOK runs no container: the API server's answers,
its RBAC and admission are what is tested). And helm 3 and 4 installing and upgrading such a release:
the hooks are admitted under Pod Security "restricted", and no right stays behind them.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devstack.chart import Render
from devstack.cluster import Cluster
from devstack.paths import REPO_ROOT
from tests.cluster.conftest import CHART, COMPONENT, HELMS, Helm, example_values

JOB_MODE = "minio.auth.generatedBy=job"
CREDENTIALS = "credentials"


def _hook_objects(render: Render, namespace: str) -> list[dict[str, Any]]:
    found = [
        dict(doc, metadata={**doc["metadata"], "namespace": namespace})
        for kind in ("ServiceAccount", "Role", "RoleBinding")
        for doc in render.objects(kind)
        if doc["metadata"]["labels"].get(COMPONENT) == CREDENTIALS
    ]
    assert [d["kind"] for d in found] == ["ServiceAccount", "Role", "RoleBinding"]
    return found


def _run_job(
    render: Render, cluster: Cluster, account: str, folder: Path
) -> subprocess.CompletedProcess[str]:
    """The hook Job's container as rendered, with the token of `account` where a pod has its own."""
    mount = folder / account
    mount.mkdir(parents=True, exist_ok=True)
    token = cluster.kubectl("create", "token", account, "--namespace", render.namespace, "--duration=10m")
    (mount / "token").write_text(token.stdout.strip())
    (mount / "namespace").write_text(render.namespace)
    (mount / "ca.crt").write_bytes((cluster.pki / "ca.crt").read_bytes())
    container = render.pod("Job", CREDENTIALS)["spec"]["containers"][0]
    assert container["command"] == ["model-packager"]
    argv = [
        str(REPO_ROOT / ".venv" / "bin" / "model-packager"),
        *container["args"],
        "--service-account",
        str(mount),
    ]
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(cluster.apiserver_port)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)


def _secret_data(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    secret = cluster.get("secret", name, namespace=namespace)
    assert secret is not None, f"no Secret {name}"
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_the_credentials_job_creates_each_secret_once_with_create_rights_only(
    kube_cluster: Cluster, tmp_path: Path
) -> None:
    namespace = kube_cluster.namespace("test-credentials-job")
    try:
        render = Render.template(release="es", namespace=namespace, chart=CHART, set_values=(JOB_MODE,))
        assert render.objects("Secret") == []  # nothing secret is rendered
        kube_cluster.apply(_hook_objects(render, namespace))
        account = render.pod("Job", CREDENTIALS)["spec"]["serviceAccountName"]

        first = _run_job(render, kube_cluster, account, tmp_path)
        assert first.returncode == 0, first.stderr
        names = [
            "es-emotion-serving-minio-root",
            "es-emotion-serving-s3-reader",
            "es-emotion-serving-s3-writer",
        ]
        assert json.loads(first.stdout) == {"created": names, "kept": []}
        created = {name: _secret_data(kube_cluster, namespace, name) for name in names}
        assert {k: len(v) for k, v in created[names[0]].items()} == {"rootUser": 16, "rootPassword": 40}
        for name in names[1:]:
            assert {k: len(v) for k, v in created[name].items()} == {
                "AWS_ACCESS_KEY_ID": 20,
                "AWS_SECRET_ACCESS_KEY": 40,
            }
            assert all(v.isalnum() for v in created[name].values())
        metadata = kube_cluster.get("secret", names[1], namespace=namespace)["metadata"]
        assert metadata["annotations"]["argocd.argoproj.io/sync-options"] == "Prune=false"
        labels = metadata["labels"]
        assert labels[COMPONENT] == "minio"  # NOTES' cleanup command selects them
        assert labels["app.kubernetes.io/instance"] == "es"

        # Every Secret the release's pods read by name is one the Job made.
        referenced = {
            ref["secretKeyRef"]["name"]
            for doc in render.docs
            for spec in [doc.get("spec", {}).get("template", {}).get("spec", {})]
            for c in spec.get("containers", []) + spec.get("initContainers", [])
            for e in c.get("env", [])
            if (ref := e.get("valueFrom", {})).get("secretKeyRef")
        }
        assert referenced, "no pod reads a generated Secret"
        assert referenced <= set(names), referenced - set(names)

        # A second run (every upgrade, every Argo CD sync) changes nothing.
        again = _run_job(render, kube_cluster, account, tmp_path)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout) == {"created": [], "kept": names}
        assert {name: _secret_data(kube_cluster, namespace, name) for name in names} == created

        # Another account of the namespace has no right to create them: exit 5, one line naming it.
        refused = _run_job(render, kube_cluster, "default", tmp_path)
        assert refused.returncode == 5, refused.stderr
        last = refused.stderr.strip().splitlines()[-1]
        assert last.startswith(
            "model-packager: the API server refused to create Secret es-emotion-serving-minio-root: "
            'secrets is forbidden: User "system:serviceaccount:test-credentials-job:default" cannot create'
        ), last
    finally:
        kube_cluster.delete_namespace(namespace)


@pytest.mark.parametrize("binary", HELMS)
@pytest.mark.parametrize("example", ["kind-cpu"])
def test_the_credentials_hook_installs_under_restricted_and_leaves_no_rights_behind(
    kube_cluster: Cluster, helm: Helm, example: str, binary: str
) -> None:
    for action in (helm.install, helm.upgrade):
        result = action("--values", example_values(example), "--set", JOB_MODE)
        assert result.returncode == 0, result.stderr
        for kind in ("job", "serviceaccount", "role", "rolebinding", "networkpolicy"):
            left = kube_cluster.get(kind, namespace=helm.namespace, selector=f"{COMPONENT}={CREDENTIALS}")
            assert left == [], f"{kind} of the credentials hook left after {action.__name__}"
    manifest = helm.run("get", "manifest", helm.release).stdout
    assert "\nkind: Secret\n" not in manifest  # the release owns no Secret: uninstall cannot drop keys
    hooks = helm.run("get", "hooks", helm.release).stdout
    assert "name: emotion-emotion-serving-credentials" in hooks
