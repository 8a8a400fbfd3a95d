"""An https endpoint signed by a private CA: published with --ca-bundle, refused at once without it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devstack.s3 import S3Server
from emotion_contract.errors import ExitCode


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture
def tls_s3(tmp_path: Path):
    """The S3 gateway serving https with a certificate for 127.0.0.1 from a CA made here."""
    ca_key, ca, key, csr, cert = (tmp_path / n for n in ("ca.key", "ca.pem", "s3.key", "s3.csr", "s3.pem"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
             "-days", "1", "-subj", "/CN=emotion-serving test CA")  # fmt: skip
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=127.0.0.1",
    )
    extensions = tmp_path / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(cert), "-days", "1", "-extfile", str(extensions))  # fmt: skip
    server = S3Server(root=tmp_path / "s3", tls=(cert, key, ca))
    try:
        yield server.start()
    finally:
        server.stop()


def test_publish_over_https_with_the_ca_bundle(packager, tree, tls_s3, bucket_name) -> None:
    args = ["--endpoint", tls_s3.endpoint, "--bucket", bucket_name]
    refused = packager("publish", str(tree.root), *args, env=tls_s3.env())
    assert refused.code == ExitCode.BAD_INPUT
    assert refused.error.startswith(f"model-packager: TLS verification of {tls_s3.endpoint} failed (")
    assert refused.error.endswith("pass the CA that signed its certificate with --ca-bundle")

    ca = str(tls_s3.tls[2])
    published = packager("publish", str(tree.root), *args, "--ca-bundle", ca, env=tls_s3.env())
    assert published.code == 0, published.stderr
    assert published.json["version"] == 1
    assert tls_s3.client().stat_object(bucket_name, "manifests/emotion/READY").size > 0
    via_env = packager("wait", *args, "--timeout", "5", env={**tls_s3.env(), "AWS_CA_BUNDLE": ca})
    assert via_env.code == 0, via_env.stderr
