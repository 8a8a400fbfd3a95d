"""Start a server process that cannot outlive us, wait until it is ready, stop it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from devstack.errors import StackError

_PR_SET_PDEATHSIG = 1
_ERROR_LINE = re.compile(r"^E\d{4} |\berror\b|\bfailed\b|\bfatal\b", re.IGNORECASE)
_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_status(url: str, timeout: float = 2.0, *, ca_file: str | None = None) -> int | None:
    """The HTTP status of a GET, or None when nothing answers (https verified against `ca_file`)."""
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:  # noqa: S310 (loopback)
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except (OSError, urllib.error.URLError):
        return None


class ManagedProcess:
    """One server process with its log file.

    The process runs in its own session (so stop() reaches its children too) and gets SIGKILL
    when the Python process that started it dies, so an interrupted test run leaves nothing behind.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (no threads are started before it)
            )

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def error_lines(self, limit: int = 5) -> list[str]:
        """The log's last lines that report an error (glog's E-prefix, or the words error/failed)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        return [line for line in lines if _ERROR_LINE.search(line)][-limit:]

    def fail(self, problem: str) -> StackError:
        errors = "\n".join(self.error_lines())
        return StackError(
            f"{self.name}: {problem}; errors in its log ({self.log_path}):\n{errors or '(none)'}\n"
            f"last log lines:\n{self.tail(10)}"
        )

    def wait_until(self, ready: Callable[[], bool], *, timeout: float, what: str = "ready") -> None:
        """Poll `ready` until it holds; fail early when the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                code = self._proc.returncode if self._proc else None
                raise self.fail(f"exited with code {code} before it was {what}")
            if ready():
                return
            time.sleep(0.1)
        raise self.fail(f"not {what} after {timeout:.0f} s")

    def stop(self, *, grace: float = 10.0) -> int | None:
        """SIGTERM the whole session, SIGKILL what is left after `grace` seconds."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        # Children that ignored SIGTERM (or were orphaned) still carry the session id.
        _signal_group(proc.pid, signal.SIGKILL)
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL the whole session at once, as a crash would."""
        if self._proc is not None:
            _signal_group(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The whole session stopped (SIGSTOP) for the block, then continued: the kernel still accepts
        connections on its sockets, nothing answers them, as with a hung server."""
        assert self._proc is not None, "not started"
        _signal_group(self._proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            _signal_group(self._proc.pid, signal.SIGCONT)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
