"""Helpers of the live-runtime tests: an emulator as its own process on a free port."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fleetsched.launch.llamacpp import raise_priority

CLI = [sys.executable, "-c", "from fleetsched.cli.app import main; main()"]


def _niced(n: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` raising the child's scheduling priority by ``n`` where allowed (root):
    its nice value, and, since Linux shares the CPU between sessions first when autogroup
    scheduling is on, the nice value of its own new session's group."""
    if not n:
        return None

    return lambda: raise_priority(n)


class Url(str):
    """A base URL that also names the process serving it."""

    pid: int
    process: subprocess.Popen[str]


@contextmanager
def emulator_process(*args: str, timeout: float = 60.0, priority: int = 0) -> Iterator[Url]:
    """Run ``fleetsched emulate --port 0 ARGS`` on 127.0.0.1; yield its base URL (with the
    process id as ``.pid``); stop it. ``priority`` > 0 raises the process's scheduling
    priority (where allowed: as root)."""
    with server_process("emulate", *args, timeout=timeout, priority=priority) as url:
        yield url


@contextmanager
def gateway_process(*args: str, timeout: float = 60.0, priority: int = 0) -> Iterator[Url]:
    """Run ``fleetsched serve --port 0 ARGS`` on 127.0.0.1, like :func:`emulator_process`."""
    with server_process("serve", *args, timeout=timeout, priority=priority) as url:
        yield url


@contextmanager
def server_process(command: str, *args: str, timeout: float, priority: int) -> Iterator[Url]:
    p = subprocess.Popen(
        [*CLI, command, "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=_niced(priority),
    )
    try:
        assert p.stdout is not None
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            for ln in p.stdout:  # type: ignore[union-attr]
                lines.put(ln)
            lines.put("")  # EOF: the process ended

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        url: Url | None = None
        while url is None:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise RuntimeError(f"fleetsched {command} did not start in time") from None
            if not line:
                err = p.stderr.read() if p.stderr else ""
                raise RuntimeError(f"fleetsched {command} exited: {err.strip()}")
            if line.startswith("listening on "):
                url = Url(line.split()[-1])
                url.pid = p.pid
                url.process = p
        yield url
    finally:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def fleetsched(
    *args: str, timeout: float = 300, priority: int = 0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, preexec_fn=_niced(priority)
    )
