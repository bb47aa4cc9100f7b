"""Child processes started by the bench, the soak and the tests."""
from __future__ import annotations

import subprocess


def stop_process(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Ask ``proc`` to terminate; kill it if it has not exited after ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
