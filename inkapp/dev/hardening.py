"""Measure the hardening limits of issue 16 against a running, expert-restricted app.

``python -m inkapp.dev.hardening --out results.json`` serves the app (shipped weights,
a fresh data directory, one configured expert with the real PBKDF2 cost) and measures:

* ``sessions``: server RSS idle, after ``--sessions`` sessions each analysing a distinct
  near-limit image (``--megapixels``), and every 5 s until those sessions' state and the
  caches' idle entries expired (``INKAPP_SESSION_TTL_S`` is set to ``--ttl`` seconds);
* ``high_bit_depth``: peak server RSS while 4 sessions analyse distinct near-limit
  16-bit grayscale PNGs at once;
* ``over_limit_upload``: the upload route's answer to a file over ``INKAPP_MAX_UPLOAD_MB``;
* ``upload_folder``: the size of the app's upload folder (``<data_dir>/uploads``) after
  ``--analyses`` small analyses, after the server stopped (SIGTERM) and after a restart;
* ``archive``: server CPU seconds spent on the worst archive a visitor can send (as many
  near-limit images as the archive pixel budget allows) until the gallery answers;
* ``expert_names``: median seconds of ``/undo_correction`` for a configured name and an
  unknown one (wrong password both times), ``--tries`` each.

``--parts`` picks a subset (in that order, one server); ``--env KEY=VALUE`` adds to the
server's environment (e.g. ``MALLOC_ARENA_MAX=2`` to compare allocator settings). RSS is
sampled from ``/proc`` every 0.2 s (Linux only). Not a test: figures go to JSON.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from inkapp.auth import hash_password
from inkapp.curation.memory import SWEEP_MAX_INTERVAL_S
from inkapp.curation.upload_folder import UPLOADS_DIR
from inkapp.curation.uploads import MAX_ARCHIVE_PIXELS
from inkapp.data.images import effective_max_pixels

from .procs import serve_app
from .soak import rss_mib

EXPERT = ("hardening-expert", "a long enough password")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Peak RSS (MiB) of a process, sampled every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval, self.peak = pid, interval, rss_mib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def near_limit_side(megapixels: float) -> tuple[int, int]:
    """(width, height) of a 4:5 image of about ``megapixels`` MP."""
    w = int((megapixels * 1e6 * 4 / 5) ** 0.5)
    return w, int(megapixels * 1e6 / w)


def painting_png(path: Path, size: tuple[int, int], seed: int) -> Path:
    """A palette PNG (small on disk, RGB when decoded) with seed-dependent bands."""
    w, h = size
    rows = (np.arange(h, dtype=np.uint32)[:, None] * (seed + 3) // 97 % 200).astype(np.uint8)
    Image.fromarray(np.broadcast_to(rows, (h, w))).convert("P").save(path, optimize=False)
    return path


def sixteen_bit_png(path: Path, size: tuple[int, int], seed: int) -> Path:
    """A 16-bit grayscale PNG with seed-dependent bands."""
    w, h = size
    rows = (np.arange(h, dtype=np.uint32)[:, None] * (seed + 7) * 31 % 65535).astype(np.uint16)
    Image.fromarray(np.ascontiguousarray(np.broadcast_to(rows, (h, w)))).save(path)
    return path


def _analyse(url: str, path: Path) -> str:
    from gradio_client import Client, handle_file
    out = Client(url, verbose=False).predict([handle_file(str(path))], "auto", "gradcam", 0.5, api_name="/analyse")
    return str(out[1])


def _parallel(jobs: list[Callable[[], Any]]) -> list[Any]:
    results: list[Any] = [None] * len(jobs)

    def run(i: int) -> None:
        try:
            results[i] = jobs[i]()
        except Exception as err:  # reported in the figures, not raised
            results[i] = f"error: {err}"

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


PARTS = ("expert_names", "sessions", "high_bit_depth", "archive", "over_limit_upload", "upload_folder")


def measure(work: Path, sessions: int, megapixels: float, ttl: float, analyses: int, tries: int,
            parts: tuple[str, ...] = PARTS, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the measurements named in ``parts`` (see the module docstring), in that order,
    against one server started with ``extra_env`` on top of the run's environment;
    return the figures."""
    data_dir = work / "data"
    uploads = data_dir / UPLOADS_DIR  # the app's own upload folder (it overrides GRADIO_TEMP_DIR)
    env = {"INKAPP_DATA_DIR": str(data_dir), "INKAPP_SESSION_TTL_S": str(ttl),
           "INKAPP_EXPERTS": f"{EXPERT[0]}={hash_password(EXPERT[1])}", "INKAPP_HF_EXPERTS": "",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), **(extra_env or {})}
    size = near_limit_side(megapixels)
    figures: dict[str, Any] = {"image_size": size, "megapixels": size[0] * size[1] / 1e6,
                               "extra_env": extra_env or {}}
    with serve_app(work / "server.log", env) as (url, proc):
        pid = proc.pid
        from gradio_client import Client
        client = Client(url, verbose=False)
        idle = rss_mib(pid)
        if "expert_names" in parts:  # known with a wrong password vs unknown
            timings: dict[str, list[float]] = {"known": [], "unknown": []}
            for _ in range(tries):
                for kind, name in (("known", EXPERT[0]), ("unknown", "nobody-" + EXPERT[0])):
                    start = time.perf_counter()
                    client.predict("painting-subject", name, "wrong password", api_name="/undo_correction")
                    timings[kind].append(time.perf_counter() - start)
            figures["expert_names"] = {k: round(statistics.median(v), 4) for k, v in timings.items()}
            figures["expert_names"]["difference_s"] = round(figures["expert_names"]["known"]
                                                            - figures["expert_names"]["unknown"], 4)
        if "sessions" in parts:  # sessions analysing near-limit images, then their expiry
            images = [painting_png(work / f"session{i}.png", size, i) for i in range(sessions)]
            status, seconds = [], []
            with RssSampler(pid) as sampler:
                for path in images:
                    start = time.perf_counter()
                    status.append(_analyse(url, path))
                    seconds.append(time.perf_counter() - start)
            after = rss_mib(pid)
            trace = expiry_trace(pid, ttl)
            figures["sessions"] = {"n": sessions, "idle_rss_mib": round(idle), "peak_rss_mib": round(sampler.peak),
                                   "after_rss_mib": round(after), "after_expiry_rss_mib": trace[-1][1],
                                   "growth_mib": round(after - idle), "after_expiry_growth_mib": round(trace[-1][1] - idle),
                                   "ttl_s": ttl, "median_analysis_s": round(statistics.median(seconds), 1),
                                   "expiry_trace_s_mib": trace,
                                   "errors": [s for s in status if "error" in s.lower()][:3]}
        if "high_bit_depth" in parts:  # four concurrent high-bit-depth analyses
            deep = [sixteen_bit_png(work / f"deep{i}.png", size, i) for i in range(4)]
            before = rss_mib(pid)
            with RssSampler(pid) as sampler:
                results = _parallel([lambda p=p: _analyse(url, p) for p in deep])
            figures["high_bit_depth"] = {"rss_before_mib": round(before), "peak_rss_mib": round(sampler.peak),
                                         "peak_over_before_mib": round(sampler.peak - before),
                                         "errors": [r for r in results if "error" in str(r).lower()][:3]}
        if "archive" in parts:  # the worst archive: as many near-limit images as its pixel budget allows
            archive = work / "archive.zip"
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
                for i in range(MAX_ARCHIVE_PIXELS // effective_max_pixels() + 2):
                    zf.write(painting_png(work / f"member{i}.png", size, 100 + i), f"member{i}.png")
            cpu = cpu_seconds(pid)
            start = time.perf_counter()
            _analyse(url, archive)
            figures["archive"] = {"zip_kib": round(archive.stat().st_size / 1024),
                                  "cpu_s": round(cpu_seconds(pid) - cpu, 1), "wall_s": round(time.perf_counter() - start, 1)}
        if "over_limit_upload" in parts:  # the web layer's answer to an over-limit upload
            limit = int(float(os.environ.get("INKAPP_MAX_UPLOAD_MB", "50")) * 2**20)
            request = urllib.request.Request(url + "gradio_api/upload", method="POST",
                                             data=_multipart(b"\0" * (limit + 1)),
                                             headers={"Content-Type": f"multipart/form-data; boundary={_BOUNDARY}"})
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    figures["over_limit_upload"] = {"status": response.status}
            except urllib.error.HTTPError as err:
                figures["over_limit_upload"] = {"status": err.code, "body": err.read()[:200].decode("utf-8", "replace")}
        if "upload_folder" in parts:  # many small analyses, then a restart
            small = work / "small"
            small.mkdir()
            for i in range(analyses):
                path = small / f"{i}.png"
                Image.new("RGB", (600, 400), (i % 256, 90, 120)).save(path)
                _analyse(url, path)
            figures["upload_folder"] = {"analyses": analyses, "folder": f"<data_dir>/{UPLOADS_DIR}",
                                        "bytes_running": folder_bytes(uploads)}
    if "upload_folder" in parts:
        figures["upload_folder"]["bytes_after_shutdown"] = folder_bytes(uploads)
        with serve_app(work / "server2.log", env):
            figures["upload_folder"]["bytes_after_restart"] = folder_bytes(uploads)
    return figures


def expiry_trace(pid: int, ttl: float, every: float = 5.0) -> list[tuple[float, int]]:
    """(seconds since the call, RSS MiB) every ``every`` s until the sessions' state and the
    caches' idle entries have expired: ``ttl`` plus the caches' sweep interval (``ttl / 4``,
    at most 60 s) plus 5 s."""
    start, end = time.monotonic(), time.monotonic() + ttl + min(ttl / 4, SWEEP_MAX_INTERVAL_S) + 5
    trace = [(0.0, round(rss_mib(pid)))]
    while time.monotonic() < end:
        time.sleep(min(every, max(0.0, end - time.monotonic())))
        trace.append((round(time.monotonic() - start, 1), round(rss_mib(pid))))
    return trace


_BOUNDARY = "inkapp-hardening-boundary"


def _multipart(payload: bytes) -> bytes:
    head = (f"--{_BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode()
    return head + payload + f"\r\n--{_BOUNDARY}--\r\n".encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the figures")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--megapixels", type=float, default=76.0)
    parser.add_argument("--ttl", type=float, default=60.0, help="session time to live for the run (s)")
    parser.add_argument("--analyses", type=int, default=50)
    parser.add_argument("--tries", type=int, default=50)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the server (e.g. MALLOC_ARENA_MAX=2); repeatable")
    args = parser.parse_args(argv)
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if any("=" not in e for e in args.env):
        parser.error("--env takes KEY=VALUE")
    extra_env = dict(e.split("=", 1) for e in args.env)
    with tempfile.TemporaryDirectory(prefix="inkapp-hardening-") as tmp:
        figures = measure(Path(tmp), args.sessions, args.megapixels, args.ttl, args.analyses, args.tries,
                          parts, extra_env)
    args.out.write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
