"""Publishers that race on one bucket end on one version (issue #13, items 1 and 2).

Two or three publishes run at once against the real S3 server, each in a thread with a Bucket that
stalls at one exact operation (a key and a call) until the test lets it go: the interleaving is
chosen, not left to the scheduler. Afterwards the bucket alone must show one version: READY names a
complete version, every Triton pointer pins it, and the newest complete OVMS folder is it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from emotion_contract.layout import Layout, upload_order, version_of
from emotion_contract.logs import Reporter
from emotion_contract.s3 import Bucket, Endpoint
from model_packager.manifest import LocalTree
from model_packager.publish import PublishResult, publish

STALL_SECONDS = 120  # the most a stalled publisher waits for the test (a safety net, never reached)


def is_pointer(key: str) -> bool:
    """Triton's config.pbtxt, configs/*.pbtxt and labels.txt: the files each publish rewrites."""
    return key.startswith("triton/") and version_of(key) is None


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


@pytest.fixture
def builds(tree: LocalTree, other_build: Callable[[str], LocalTree]) -> list[LocalTree]:
    return [tree, other_build("second"), other_build("third")]


def test_an_older_publisher_stalled_before_its_pointers_does_not_win(builds, endpoint, one_version) -> None:
    """The issue's race: A checked READY, then stalls; B publishes a newer version to the end; A's
    pointers then land over B's. A settles them back on READY: Triton, its text path and OVMS all
    serve B's version, and both publishers exit 0."""
    first, second, _ = builds
    stalled = StalledBucket(endpoint, at=is_pointer)
    a = Publisher(first, stalled).start()
    assert stalled.reached.wait(STALL_SECONDS)
    b = Publisher(second, Bucket(endpoint)).start().join()
    assert b.version == 2
    stalled.release.set()
    assert a.join().version == 1
    bucket = Bucket(endpoint)
    assert one_version(bucket, Layout("emotion")) == 2
    again = publish(tree=first, bucket=bucket, reporter=Reporter())  # a rerun changes nothing
    assert (again.already_published, again.uploaded_objects) == (True, 0)
    assert one_version(bucket, Layout("emotion")) == 2


def test_three_publishers_stalled_at_pointers_and_ready_end_on_the_newest(
    builds, endpoint, one_version
) -> None:
    first, second, third = builds
    at_pointers = StalledBucket(endpoint, at=is_pointer)
    at_ready = StalledBucket(endpoint, at=lambda key: key.endswith("/READY"))
    a = Publisher(first, at_pointers).start()
    assert at_pointers.reached.wait(STALL_SECONDS)
    b = Publisher(second, at_ready).start()
    assert at_ready.reached.wait(STALL_SECONDS)
    assert Publisher(third, Bucket(endpoint)).start().join().version == 3
    at_ready.release.set()
    at_pointers.release.set()
    assert (a.join().version, b.join().version) == (1, 2)
    assert one_version(Bucket(endpoint), Layout("emotion")) == 3


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


def test_the_invariant_check_finds_a_pointer_on_another_version(builds, endpoint, one_version) -> None:
    """The invariant check itself finds a pointer left on another version (it can fail)."""
    first, *_ = builds
    bucket = Bucket(endpoint)
    publish(tree=first, bucket=bucket, reporter=Reporter())
    assert one_version(bucket, Layout("emotion")) == 1
    config = (bucket.read("triton/emotion/configs/cpu.pbtxt") or b"").decode()
    bucket.put("triton/emotion/configs/cpu.pbtxt", config.replace("[ 1 ]", "[ 7 ]").encode())
    with pytest.raises(AssertionError, match=r"cpu.pbtxt pins \['7'\], READY 1"):
        one_version(bucket, Layout("emotion"))
