"""Soak test of a running app: many analyses from concurrent API clients, with the
server's resident memory before and after.

``python -m inkapp.dev.soak`` starts ``inkapp serve`` on a free loopback port with a
throw-away data directory (or uses ``--url``/``--pid`` of an app already running),
sends ``--analyses`` uploads of small generated images through ``/analyse`` from
``--clients`` threads (one gradio_client each), and prints one JSON object: errors,
wall time, and the server's RSS when ready, after the ``--warmup`` analyses (the
baseline; by default enough to fill the app's bounded analysis cache) and at the end. Exit status 1 when any analysis failed or the end RSS
is more than ``--max-rss-growth`` above the baseline.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from inkapp.dev.procs import serve_app

DEFAULT_SIDE = 96  # pixels: small images keep the soak about the server, not the model
START_TIMEOUT_S = 600.0
REQUEST_TIMEOUT_S = 600.0  # per HTTP request; a loaded CPU queues analyses for minutes


@dataclass
class SoakResult:
    """What one soak run measured (RSS in MiB, times in seconds)."""

    analyses: int
    clients: int
    errors: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    rss_ready_mib: float = 0.0
    rss_start_mib: float = 0.0
    rss_end_mib: float = 0.0

    @property
    def rss_growth(self) -> float:
        """Relative RSS change from the warmed-up baseline to the end (0.05 = +5 %)."""
        return self.rss_end_mib / self.rss_start_mib - 1.0 if self.rss_start_mib else 0.0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {**asdict(self), "n_errors": len(self.errors), "rss_growth": round(self.rss_growth, 4)}


def rss_mib(pid: int) -> float:
    """Resident set size of process ``pid`` in MiB (Linux ``/proc``)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def soak_image(index: int, side: int = DEFAULT_SIDE) -> bytes:
    """A distinct small PNG per ``index`` (so results are never served from the cache)."""
    rng = np.random.default_rng(index)
    arr = np.full((side, side * 3 // 4, 3), 235, np.uint8)
    arr[::4, ::3] = rng.integers(0, 200, (arr[::4, ::3].shape[0], arr[::4, ::3].shape[1], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@contextmanager
def serve(data_dir: Path, log_path: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """Run ``python -m inkapp serve`` over ``data_dir`` on a free loopback port; yield (url, pid)."""
    with serve_app(log_path, {"INKAPP_DATA_DIR": str(data_dir), **(env or {})}, START_TIMEOUT_S) as (url, proc):
        yield url, proc.pid


#: Warm-up analyses before the RSS baseline: more than the app's analysis cache holds
#: (``AnalysisCache(max_entries=64)``), so the baseline is taken with that bounded cache
#: full and the soak measures leaks, not the cache filling up.
DEFAULT_WARMUP = 80


def run_soak(url: str, pid: int, analyses: int, clients: int, workdir: Path, side: int = DEFAULT_SIDE,
             first_index: int = 0, warmup: int = DEFAULT_WARMUP) -> SoakResult:
    """Send ``analyses`` uploads to ``/analyse`` of the app at ``url`` (server process ``pid``)
    from ``clients`` concurrent clients; images are numbered from ``first_index``.

    ``max(warmup, clients)`` warm-up analyses run first and are not counted; the RSS
    baseline (``rss_start_mib``) is taken after them.
    """
    from gradio_client import Client, handle_file

    workdir.mkdir(parents=True, exist_ok=True)
    result = SoakResult(analyses=analyses, clients=clients, rss_ready_mib=rss_mib(pid))
    local = threading.local()
    lock = threading.Lock()

    def analyse(index: int) -> None:
        if not hasattr(local, "client"):
            local.client = Client(url, verbose=False, httpx_kwargs={"timeout": REQUEST_TIMEOUT_S})
        path = workdir / f"soak-{index}.png"
        path.write_bytes(soak_image(index, side))
        try:
            _, status, *_ = local.client.predict([handle_file(str(path))], "auto", "gradcam", 0.5,
                                                 api_name="/analyse")
            if f"**{path.name}** —" not in status:
                raise RuntimeError(f"unexpected status: {status[:200]}")
        except Exception as err:  # noqa: BLE001 - every failure is counted and reported, none stops the soak
            with lock:
                result.errors.append(f"analysis {index}: {type(err).__name__}: {err}")
        finally:
            path.unlink(missing_ok=True)

    with ThreadPoolExecutor(clients) as pool:
        n_warm = max(warmup, clients)
        list(pool.map(analyse, range(first_index + analyses, first_index + analyses + n_warm)))  # warm-up
        result.errors.clear()
        result.rss_start_mib = rss_mib(pid)
        started = time.perf_counter()
        list(pool.map(analyse, range(first_index, first_index + analyses)))
        result.wall_seconds = round(time.perf_counter() - started, 2)
    result.rss_end_mib = rss_mib(pid)
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line: run a soak and print its JSON summary."""
    parser = argparse.ArgumentParser(prog="python -m inkapp.dev.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--analyses", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--side", type=int, default=DEFAULT_SIDE, help="longest image side in pixels")
    parser.add_argument("--url", help="an app already running (requires --pid); default: start one")
    parser.add_argument("--pid", type=int, help="process id of the app at --url (for its RSS)")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                        help="uncounted analyses before the RSS baseline (default fills the app's analysis cache)")
    parser.add_argument("--max-rss-growth", type=float, default=0.10,
                        help="fail when end RSS exceeds the warmed-up baseline by more than this fraction")
    args = parser.parse_args(argv)
    if (args.url is None) != (args.pid is None):
        parser.error("--url and --pid go together")
    with tempfile.TemporaryDirectory(prefix="inkapp-soak-") as tmp:
        work = Path(tmp)
        if args.url:
            result = run_soak(args.url, args.pid, args.analyses, args.clients, work / "uploads", args.side,
                              warmup=args.warmup)
        else:
            (work / "data").mkdir()
            with serve(work / "data", work / "server.log") as (url, pid):
                result = run_soak(url, pid, args.analyses, args.clients, work / "uploads", args.side,
                                  warmup=args.warmup)
    print(json.dumps(result.to_dict(), indent=1))
    return 1 if result.errors or result.rss_growth > args.max_rss_growth else 0


if __name__ == "__main__":
    sys.exit(main())
