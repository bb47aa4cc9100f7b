"""Child processes started by the bench, the soak and the tests: a free port, the app
served in a subprocess until it answers, and stopping it."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class AppStartError(RuntimeError):
    """The app exited or did not answer in time; ``str()`` says which, with its log's tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Ask ``proc`` to terminate; kill it if it has not exited after ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(log_path: Path, chars: int = 3000) -> str:
    try:
        return log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return "(no log)"


@contextmanager
def serve_app(log_path: Path, env: dict[str, str] | None = None, timeout: float = 600.0,
              cwd: Path | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``python -m inkapp serve`` on a free loopback port with ``env`` over this
    process's environment (keys mapped to "" are removed); yield ``(url, process)`` once
    it answers ``/config``, and stop it on exit. Output goes to ``log_path``.

    Raises :class:`AppStartError` when the app exits first or does not answer within
    ``timeout`` seconds.
    """
    port = free_port()
    full = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
            "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    full = {k: v for k, v in full.items() if v != ""}
    url = f"http://127.0.0.1:{port}/"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "inkapp", "serve"], env=full, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AppStartError(f"the app exited with code {proc.returncode}:\n{_tail(log_path)}")
            try:
                with urllib.request.urlopen(url + "config", timeout=5):
                    break
            except urllib.error.HTTPError:
                break  # an HTTP error status is still an answer
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                if time.monotonic() > deadline:
                    raise AppStartError(f"the app did not answer on {url} within {timeout:.0f} s:\n"
                                        f"{_tail(log_path)}") from None
                time.sleep(0.1)
        yield url, proc
    finally:
        stop_process(proc, timeout=30)
