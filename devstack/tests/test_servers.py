"""The harness against the real servers: S3 gateway, Triton from s3://, Prometheus scraping Triton."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from minio.commonconfig import CopySource

from devstack import StackError
from devstack.prometheus import ScrapeTarget
from devstack.s3 import S3Server
from devstack.triton import TritonServer, s3_repository_url

MODELS = Path(__file__).parent / "models"


def upload_tree(s3: S3Server, bucket: str, prefix: str, folder: Path) -> None:
    client = s3.client()
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.fput_object(bucket, f"{prefix}/{path.relative_to(folder).as_posix()}", str(path))


def test_s3_put_get_list_copy_delete(s3_server: S3Server, bucket_name: str) -> None:
    client = s3_server.client()
    client.make_bucket(bucket_name)
    client.put_object(bucket_name, "a/one.txt", io.BytesIO(b"one"), 3)
    client.put_object(bucket_name, "a/b/two.txt", io.BytesIO(b"two"), 3)
    client.copy_object(bucket_name, "c/three.txt", CopySource(bucket_name, "a/one.txt"))

    names = sorted(o.object_name for o in client.list_objects(bucket_name, recursive=True))
    assert names == ["a/b/two.txt", "a/one.txt", "c/three.txt"]
    top = sorted(o.object_name for o in client.list_objects(bucket_name, prefix="a/"))
    assert top == ["a/b/", "a/one.txt"]  # ListObjectsV2 with a delimiter
    assert client.get_object(bucket_name, "c/three.txt").read() == b"one"

    client.remove_object(bucket_name, "a/one.txt")
    assert "a/one.txt" not in {o.object_name for o in client.list_objects(bucket_name, recursive=True)}


def test_s3_multipart_upload_round_trips(s3_server: S3Server, bucket_name: str) -> None:
    client = s3_server.client()
    client.make_bucket(bucket_name)
    payload = os.urandom(12 * 1024 * 1024 + 17)  # three 5 MiB parts, the last one short
    client.put_object(bucket_name, "big.bin", io.BytesIO(payload), len(payload), part_size=5 * 1024 * 1024)
    stat = client.stat_object(bucket_name, "big.bin")
    assert stat.size == len(payload)
    assert stat.etag.endswith("-3")  # the multipart ETag form: md5-of-md5s, dash, part count
    assert client.get_object(bucket_name, "big.bin").read() == payload


def test_s3_rejects_wrong_keys(s3_server: S3Server) -> None:
    from minio import Minio
    from minio.error import S3Error

    wrong = Minio(s3_server.host_port, access_key=s3_server.access_key, secret_key="wrong", secure=False)
    with pytest.raises(S3Error) as err:
        wrong.list_buckets()
    assert err.value.code in {"SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId"}


def test_s3_keeps_data_across_restart(fresh_s3: S3Server, bucket_name: str) -> None:
    client = fresh_s3.client()
    client.make_bucket(bucket_name)
    client.put_object(bucket_name, "k", io.BytesIO(b"v"), 1)
    fresh_s3.stop()
    fresh_s3.start()
    assert fresh_s3.client().get_object(bucket_name, "k").read() == b"v"


def test_triton_serves_repository_from_s3_over_http_and_grpc(
    s3_server: S3Server, bucket_name: str, triton_factory
) -> None:
    upload_tree(s3_server, bucket_name, "triton", MODELS)
    repository = s3_repository_url(s3_server.host_port, bucket_name, "triton")
    triton = triton_factory(repository, env=s3_server.env())
    assert triton.model_ready("double")

    x = np.array([[1.5, -2.0], [3.0, 0.25]], dtype=np.float32)
    http = httpclient.InferenceServerClient(triton.http_url)
    inp = httpclient.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    np.testing.assert_array_equal(http.infer("double", [inp]).as_numpy("Y"), 2 * x)

    grpc = grpcclient.InferenceServerClient(triton.grpc_url)
    ginp = grpcclient.InferInput("X", list(x.shape), "FP32")
    ginp.set_data_from_numpy(x)
    np.testing.assert_array_equal(grpc.infer("double", [ginp]).as_numpy("Y"), 2 * x)


def test_prometheus_scrapes_triton_metrics(tmp_path: Path, triton_factory, prometheus_factory) -> None:
    triton = triton_factory(MODELS)
    prometheus = prometheus_factory(
        targets=[ScrapeTarget(job="triton", address=f"127.0.0.1:{triton.metrics_port}")]
    )
    client = httpclient.InferenceServerClient(triton.http_url)
    inp = httpclient.InferInput("X", [1, 2], "FP32")
    inp.set_data_from_numpy(np.ones((1, 2), dtype=np.float32))
    for _ in range(5):
        client.infer("double", [inp])

    result = prometheus.wait_for('nv_inference_request_success{model="double"} >= 5')
    assert float(result[0]["value"][1]) == 5.0
    assert prometheus.targets_health() == {"triton": "up"}


def test_triton_that_cannot_load_fails_fast_with_its_log(tmp_path: Path) -> None:
    broken = tmp_path / "repo"
    shutil.copytree(MODELS, broken)
    (broken / "double" / "1" / "model.py").write_text("raise RuntimeError('deliberately broken model')\n")
    server = TritonServer(root=tmp_path / "triton", repository=str(broken))
    started = time.monotonic()
    with pytest.raises(StackError) as err:
        server.start(timeout=60)
    server.stop()
    message = str(err.value)
    assert message.startswith("tritonserver: exited with code 1 before it was ready")
    assert "deliberately broken model" in message  # the server's own last log lines
    assert time.monotonic() - started < 60  # it noticed the exit, not the timeout


def test_no_server_outlives_a_killed_test_process(tmp_path: Path) -> None:
    """A harness user killed with SIGKILL (no cleanup code runs) takes its servers with it."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from devstack import S3Server, TritonServer
        s3 = S3Server(root=Path({str(tmp_path / "s3")!r})).start()
        triton = TritonServer(root=Path({str(tmp_path / "t")!r}), repository={str(MODELS)!r}).start()
        print(s3._proc.pid, triton._proc.pid, flush=True)
        time.sleep(600)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2, line
        session_members = _session_members(pids)
        assert session_members, "the servers should be running"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _alive(session_members):
        time.sleep(0.2)
    assert not _alive(session_members), "server processes survived their parent"


def _session_members(session_ids: list[int]) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) in session_ids:
                members.append(proc)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
