"""The runner's side of the worker processes: start them, send commands, collect answers with a deadline."""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from multiprocessing.connection import Connection, wait
from types import TracebackType
from typing import Any

from emotion_contract.errors import ToolError
from loadtest.worker import Setup, Share, worker_main


class WorkerFailed(ToolError):
    """A worker process died or did not answer in time (a bug, or the machine ran out of memory)."""


class WorkerPool:
    def __init__(self, size: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.size = size
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        self._busy: set[int] = set()  # workers with a command out
        for index in range(size):
            parent, child = context.Pipe()
            proc = context.Process(
                target=worker_main, args=(child,), name=f"loadtest-worker-{index}", daemon=True
            )
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)

    def setup(self, setup: Setup, *, timeout: float) -> list[dict[str, Any]]:
        for index, conn in enumerate(self._conns):
            conn.send(("setup", setup))
            self._busy.add(index)
        return self._collect(self._conns, deadline=time.monotonic() + timeout, what=f"set up {setup.key}")

    def start_level(self, shares: list[Share]) -> list[Connection]:
        conns = self._conns[: len(shares)]
        for index, (conn, share) in enumerate(zip(conns, shares, strict=True)):
            conn.send(("level", share))
            self._busy.add(index)
        return conns

    def finish_level(self, conns: list[Connection], *, deadline: float) -> list[dict[str, Any]]:
        return self._collect(conns, deadline=deadline, what="run a level")

    def _collect(self, conns: list[Connection], *, deadline: float, what: str) -> list[dict[str, Any]]:
        answers: dict[int, dict[str, Any]] = {}
        waiting = list(conns)
        while waiting:
            ready = wait(waiting, timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                self.close()
                raise WorkerFailed(f"a worker did not {what} in time")
            for conn in ready:
                try:
                    answers[conns.index(conn)] = conn.recv()
                    self._busy.discard(self._conns.index(conn))
                except (EOFError, OSError):
                    self.close()
                    raise WorkerFailed(f"a worker process died while it was to {what}") from None
                waiting.remove(conn)
        return [answers[i] for i in range(len(conns))]

    def close(self) -> None:
        """Idle workers are asked to close; a worker still busy with a command (the run was interrupted) is
        killed at once, since it would not read the request before its level ends."""
        for index, conn in enumerate(self._conns):
            if index in self._busy:
                self._procs[index].kill()
                continue
            with contextlib.suppress(OSError, ValueError):
                conn.send(("close", None))
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self._conns:
            conn.close()
        self._conns, self._procs, self._busy = [], [], set()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
