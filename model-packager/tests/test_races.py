"""Publishers that race on one bucket end on one version (issue #13, items 1 and 2).

Two or three publishes run at once against the real S3 server, each in a thread with a Bucket that
stalls at one exact operation (a key and a call) until the test lets it go: the interleaving is
chosen, not left to the scheduler. Afterwards the bucket alone must show one version: READY names a
complete version, every Triton pointer pins it, and the newest complete OVMS folder is it.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devstack.s3 import S3Server
from model_packager.layout import Layout, upload_order
from model_packager.manifest import LocalTree, dump
from model_packager.progress import Reporter
from model_packager.publish import PublishResult, publish
from model_packager.s3 import Bucket, Endpoint

STALL_SECONDS = 120  # the most a stalled publisher waits for the test (a safety net, never reached)


class StalledBucket(Bucket):
    """A Bucket that blocks before the first write of a key matching `at`, until released."""

    def __init__(self, endpoint: Endpoint, at: Callable[[str], bool]) -> None:
        super().__init__(endpoint)
        self._at = at
        self.reached = threading.Event()
        self.release = threading.Event()

    def put(self, key: str, data: bytes, **options: object) -> bool:
        if self._at(key) and not self.reached.is_set():
            self.reached.set()
            assert self.release.wait(STALL_SECONDS), f"never released at {key}"
        return super().put(key, data, **options)


@dataclass
class Publisher:
    """One publish in a thread of its own."""

    tree: LocalTree
    bucket: Bucket
    result: PublishResult | None = None
    error: BaseException | None = None
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result = publish(tree=self.tree, bucket=self.bucket, reporter=Reporter())
        except BaseException as err:  # handed to the test
            self.error = err

    def start(self) -> Publisher:
        self.thread.start()
        return self

    def join(self) -> PublishResult:
        self.thread.join(STALL_SECONDS)
        assert not self.thread.is_alive(), "the publish did not finish"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def other_build(tree: LocalTree, folder: Path, tag: str) -> LocalTree:
    """The same files as another build (another fingerprint): a second Job's tree, without a second
    30-second conversion."""
    copy = Path(shutil.copytree(tree.root, folder))
    manifest = {**tree.manifest, "fingerprint": f"sha256:{tag}"}
    manifest_bytes = dump(manifest)
    layout = Layout(tree.name)
    (copy / layout.manifest(tree.version)).write_bytes(manifest_bytes)
    return LocalTree.open(copy, tree.name)


@pytest.fixture
def endpoint(s3_server: S3Server, bucket_name: str, monkeypatch: pytest.MonkeyPatch) -> Endpoint:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return Endpoint(url=s3_server.endpoint, bucket=bucket_name, budget=30)


@pytest.fixture
def builds(tree: LocalTree, tmp_path: Path) -> list[LocalTree]:
    return [tree, *(other_build(tree, tmp_path / f"build-{i}", f"build-{i}") for i in (2, 3))]


def pointer(key: str) -> bool:
    """Triton's config.pbtxt, configs/*.pbtxt and labels.txt: what each publish rewrites."""
    return key.endswith((".pbtxt", "/labels.txt"))


def assert_one_version(bucket: Bucket, layout: Layout) -> int:
    """From the bucket alone: READY's version is complete, every pointer and both trees agree on it."""
    ready = bucket.read_json(layout.ready)
    assert ready is not None
    version = int(ready["version"])
    manifest = bucket.read_json(layout.manifest(version))
    assert manifest is not None, f"READY names {version} without a manifest"
    for key in bucket.keys("triton/"):
        if re.fullmatch(r"triton/[^/]+/(configs/)?[^/]+\.pbtxt", key):
            pinned = re.findall(r"versions: \[ (\d+) \]", (bucket.read(key) or b"").decode())
            assert set(pinned) == {str(version)}, f"{key} pins {pinned}, READY {version}"
    for key, entry in manifest["objects"].items():  # pointers included: they are version's own
        found = bucket.stat(key)
        assert found is not None, f"{key} of version {version} is missing"
        assert (found["size"], found["sha256"]) == (entry["size"], entry["sha256"]), key
        assert bucket.digest(key) == entry["sha256"], key
    for model in (layout.token_model, layout.text_model):
        keys = set(bucket.keys(f"ovms/{model}/"))
        complete = {
            int(k.split("/")[2]) for k in keys if k.endswith("/model.xml") and k[:-4] + ".bin" in keys
        }
        assert max(complete) == version, f"OVMS would serve {model} {max(complete)}, READY {version}"
    return version


def test_an_older_publisher_stalled_before_its_pointers_does_not_win(builds, endpoint) -> None:
    """The issue's race: A checked READY, then stalls; B publishes a newer version to the end; A's
    pointers then land over B's. A settles them back on READY: Triton, its text path and OVMS all
    serve B's version, and both publishers exit 0."""
    first, second, _ = builds
    stalled = StalledBucket(endpoint, at=pointer)
    a = Publisher(first, stalled).start()
    assert stalled.reached.wait(STALL_SECONDS)
    b = Publisher(second, Bucket(endpoint)).start().join()
    assert b.version == 2
    stalled.release.set()
    assert a.join().version == 1
    bucket = Bucket(endpoint)
    assert assert_one_version(bucket, Layout("emotion")) == 2
    again = publish(tree=first, bucket=bucket, reporter=Reporter())  # a rerun changes nothing
    assert (again.already_published, again.uploaded_objects) == (True, 0)
    assert assert_one_version(bucket, Layout("emotion")) == 2


def test_three_publishers_stalled_at_pointers_and_ready_end_on_the_newest(builds, endpoint) -> None:
    first, second, third = builds
    at_pointers = StalledBucket(endpoint, at=pointer)
    at_ready = StalledBucket(endpoint, at=lambda key: key.endswith("/READY"))
    a = Publisher(first, at_pointers).start()
    assert at_pointers.reached.wait(STALL_SECONDS)
    b = Publisher(second, at_ready).start()
    assert at_ready.reached.wait(STALL_SECONDS)
    assert Publisher(third, Bucket(endpoint)).start().join().version == 3
    at_ready.release.set()
    at_pointers.release.set()
    assert (a.join().version, b.join().version) == (1, 2)
    assert assert_one_version(Bucket(endpoint), Layout("emotion")) == 3


def test_ovms_sees_a_version_only_after_every_other_file_of_it() -> None:
    """OVMS serves any complete folder (it has no pointer to wait on): its model.xml files are the
    last objects of a version, after Triton's model.onnx, so a killed publish cannot leave OVMS
    serving a version that Triton and READY never reach."""
    keys = [
        "ovms/emotion/2/model.bin",
        "ovms/emotion/2/model.xml",
        "ovms/emotion-text/2/model.xml",
        "ovms/emotion-text/2/model.bin",
        "triton/emotion/2/model.onnx",
        "triton/emotion/2/tokenizer.json",
        "triton/emotion-tokenizer/2/model.py",
    ]
    order = upload_order(keys)
    assert order[-2:] == ["ovms/emotion-text/2/model.xml", "ovms/emotion/2/model.xml"]
    assert order.index("triton/emotion/2/model.onnx") < order.index("ovms/emotion-text/2/model.xml")
    assert order.index("triton/emotion/2/tokenizer.json") < order.index("triton/emotion/2/model.onnx")


def test_the_invariant_check_finds_a_pointer_on_another_version(builds, endpoint) -> None:
    """The invariant check itself finds a pointer left on another version (it can fail)."""
    first, *_ = builds
    bucket = Bucket(endpoint)
    publish(tree=first, bucket=bucket, reporter=Reporter())
    assert assert_one_version(bucket, Layout("emotion")) == 1
    config = (bucket.read("triton/emotion/configs/cpu.pbtxt") or b"").decode()
    bucket.put("triton/emotion/configs/cpu.pbtxt", config.replace("[ 1 ]", "[ 7 ]").encode())
    with pytest.raises(AssertionError, match=r"cpu.pbtxt pins \['7'\], READY 1"):
        assert_one_version(bucket, Layout("emotion"))
