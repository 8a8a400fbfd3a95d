"""The runner's side of the workers: one load engine process each (load-tests/engine), driven by commands
over its stdin and stdout, answers collected with a deadline.

`setup` builds a target's requests once (protocol.py) into a request file every engine reads, then has each
engine connect; `start_level` hands each engine its share; `finish_level` collects the engines' answers and
turns each into the worker result the runner merges (engine.level_result: the answers that are not
byte-identical to the reference are checked there, after the level).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any

from emotion_contract.errors import ToolError
from loadtest.engine import engine_path, level_result, write_requests
from loadtest.prepare import RequestData, load_prepared, requests_for
from loadtest.protocol import payloads
from loadtest.worker import Setup, Share


class WorkerFailed(ToolError):
    """A worker process died or did not answer in time (a bug, or the machine ran out of memory)."""


class WorkerPool:
    def __init__(self, size: int) -> None:
        try:
            binary = engine_path()
        except FileNotFoundError as err:
            raise WorkerFailed(str(err)) from None
        self.size = size
        self._scratch = tempfile.TemporaryDirectory(prefix="loadtest-requests-")
        self._procs: list[subprocess.Popen[bytes]] = []
        self._buffers: list[bytearray] = []
        self._busy: set[int] = set()  # workers with a command out
        self._targets: dict[str, tuple[list[RequestData], tuple[str, ...], float]] = {}
        self._level_key: str | None = None
        for _ in range(size):
            proc = subprocess.Popen(
                [binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, close_fds=True
            )
            os.set_blocking(proc.stdout.fileno(), False)
            self._procs.append(proc)
            self._buffers.append(bytearray())

    def setup(self, setup: Setup, *, timeout: float) -> list[dict[str, Any]]:
        prepared = load_prepared(Path(setup.inputs))
        requests = requests_for(prepared, batch_size=setup.batch_size, text=setup.text)
        path = Path(self._scratch.name) / f"{len(self._targets)}-{setup.protocol}.bin"
        write_requests(path, payloads(setup.protocol, setup.url, setup.model, requests), requests)
        self._targets[setup.key] = (requests, prepared.texts, setup.tolerance)
        command = {
            "cmd": "setup",
            "key": setup.key,
            "protocol": setup.protocol,
            "url": setup.url,
            "requests": str(path),
            "connect_timeout": setup.connect_timeout,
        }
        indices = list(range(self.size))
        for index in indices:
            self._send(index, command)
        return self._collect(indices, deadline=time.monotonic() + timeout, what=f"set up {setup.key}")

    def start_level(self, shares: list[Share]) -> list[int]:
        indices = list(range(len(shares)))
        self._level_key = shares[0].key
        for index, share in zip(indices, shares, strict=True):
            self._send(index, {"cmd": "level", **asdict(share)})
        return indices

    def finish_level(self, conns: list[int], *, deadline: float) -> list[dict[str, Any]]:
        answers = self._collect(conns, deadline=deadline, what="run a level")
        requests, texts, tolerance = self._targets[self._level_key]
        return [level_result(answer, requests, tolerance, texts) for answer in answers]

    def _send(self, index: int, command: dict[str, Any]) -> None:
        try:
            self._procs[index].stdin.write(json.dumps(command).encode() + b"\n")
        except OSError:
            self.close()
            raise WorkerFailed("a worker process died before its command") from None
        self._busy.add(index)

    def _collect(self, indices: list[int], *, deadline: float, what: str) -> list[dict[str, Any]]:
        answers: dict[int, dict[str, Any]] = {}
        with selectors.DefaultSelector() as selector:
            for index in indices:
                selector.register(self._procs[index].stdout, selectors.EVENT_READ, index)
            while len(answers) < len(indices):
                ready = selector.select(timeout=max(0.0, deadline - time.monotonic()))
                if not ready:
                    self.close()
                    raise WorkerFailed(f"a worker did not {what} in time")
                for key, _ in ready:
                    index = key.data
                    chunk = os.read(key.fd, 1 << 20)
                    if not chunk:
                        self.close()
                        raise WorkerFailed(f"a worker process died while it was to {what}")
                    buffer = self._buffers[index]
                    buffer += chunk
                    end = buffer.find(b"\n")
                    if end >= 0:
                        answers[index] = json.loads(buffer[:end])
                        del buffer[: end + 1]
                        self._busy.discard(index)
                        selector.unregister(key.fileobj)
        return [answers[i] for i in indices]

    def close(self) -> None:
        """Idle engines are asked to close; an engine still busy with a command (the run was interrupted) is
        killed at once, since it would not read the request before its level ends."""
        for index, proc in enumerate(self._procs):
            if index in self._busy:
                proc.kill()
                continue
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.write(b'{"cmd": "close"}\n')
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for stream in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    stream.close()
        self._procs, self._buffers, self._busy = [], [], set()
        self._scratch.cleanup()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
