"""``inkapp bench``: speed and memory of the shipped models, checked against targets.

For every task whose model folder exists (:func:`inkapp.paths.shipped_weights`) it
measures, on the default device (CUDA when present) with ``torch.set_num_threads`` =
the usable CPU cores (``--threads`` overrides it, e.g. on a machine busy with other work,
where more threads than free cores makes every parallel region wait):

* ``baseline_forward_ms`` — the BASELINE: the bare timm trunk of the model's backbone
  (``create_trunk(backbone, pretrained=None).forward_features``), batch 1, at the
  model's input size, under ``torch.inference_mode``;
* ``forward_ms`` — the model's forward, batch 1, same input, ``inference_mode``;
* ``analysis_ms`` — what the app does for one upload: decode a synthetic 1000×3000 px
  hanging-scroll JPEG from bytes (:func:`~inkapp.data.images.load_image`), then
  :meth:`~inkapp.inference.Predictor.analyse` (preprocess + forward + Grad-CAM +
  attention maps at the image's full size), then
  :func:`~inkapp.explain.overlay.overlay` for the CAM and every attention map;
  ``analysis_breakdown_ms`` splits it into ``decode``, ``analyse`` and ``overlay``;
* ``baseline_throughput_ips`` / ``throughput_ips`` — images per second of the bare
  trunk / the model at each batch size (8 and 32), ``inference_mode``;
* ``scan_throughput_ips`` — images per second of :func:`inkapp.scan.scan` with the
  predictor ``inkapp scan`` uses (decoding workers, preprocessing, model, CSV) over a
  generated folder of 640×480 JPEGs at the largest batch size, worker start-up
  included;
* ``options`` — candidate speed-ups measured next to the defaults:
  ``channels_last`` (model in channels-last memory format: batch-1 forward ms,
  throughput at the largest batch, largest |Δprobability|) and ``jpeg_draft``
  (Pillow's DCT-domain downscaling while decoding the scroll, never below the model's
  input size: decode ms and largest |Δprobability| of the prediction) and
  ``display_copy`` (the whole analysis with maps and overlays rendered on a copy whose
  longer side is at most 1024 px instead of the full-size scroll: ms);
* ratios ``forward_over_baseline``, ``analysis_over_baseline`` (both against
  ``baseline_forward_ms``) and ``scan_over_baseline_throughput`` (against the trunk's
  throughput at the scan's batch size).

Global figures: ``peak_rss_mb`` — peak resident memory of the bench process in MiB
with every model loaded and exercised (decoding workers not included); ``cold_start_s``
— seconds from starting ``python -m inkapp serve`` to its first answered HTTP request;
``app_rss_mb`` — the app's peak resident memory at that moment (Linux only).

Baseline and candidate are timed alternately inside one loop, so background load hits
both alike; every time figure is the median over the timed runs (after warm-up). A
figure that could not be measured is ``null`` and its reason is in ``reasons``.
"""
from __future__ import annotations

import importlib.util
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from inkapp.data.images import load_image
from inkapp.explain.overlay import overlay
from inkapp.device import default_device, usable_cores
from inkapp.inference import Predictor
from inkapp.models import create_trunk
from inkapp.paths import shipped_weights, weights_root
from inkapp.tasks import TASKS
from inkapp.scan import default_workers, scan
from inkapp.dev.procs import AppStartError, serve_app

#: figure -> (comparison, limit); ratios are per model, the others global.
TARGETS: dict[str, tuple[str, float]] = {
    "analysis_over_baseline": ("<=", 3.0),
    "forward_over_baseline": ("<=", 1.3),
    "scan_over_baseline_throughput": (">=", 0.8),
    "cold_start_s": ("<=", 15.0),
    "peak_rss_mb": ("<=", 2048.0),
}
MODEL_FIGURES = ("baseline_forward_ms", "forward_ms", "analysis_ms", "analysis_breakdown_ms",
                 "baseline_throughput_ips", "throughput_ips", "scan_throughput_ips", "options", "ratios")
GLOBAL_FIGURES = ("peak_rss_mb", "cold_start_s", "app_rss_mb")
COLD_START_TIMEOUT_S = 180.0
DISPLAY_SIDE = 1024  # px, longer side of the display copy in the ``display_copy`` option


@dataclass(frozen=True)
class Settings:
    """How much work one bench run does.

    ``runs`` — timed repetitions per figure (median reported); ``warmup`` — untimed
    repetitions first; ``scroll`` — (width, height) of the synthetic scroll, px;
    ``batch_sizes`` — throughput batch sizes (the last is also the scan's);
    ``scan_images`` / ``scan_size`` — generated folder for the scan figure (count,
    (width, height) px); ``cold_start`` — measure the app's start-up.
    """

    runs: int
    warmup: int
    scroll: tuple[int, int]
    batch_sizes: tuple[int, ...]
    scan_images: int
    scan_size: tuple[int, int]
    cold_start: bool

    @classmethod
    def full(cls) -> "Settings":
        return cls(runs=10, warmup=2, scroll=(1000, 3000), batch_sizes=(8, 32), scan_images=64,
                   scan_size=(640, 480), cold_start=True)

    @classmethod
    def quick(cls) -> "Settings":
        return cls(runs=1, warmup=1, scroll=(300, 900), batch_sizes=(2, 4), scan_images=8,
                   scan_size=(160, 120), cold_start=False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_medians(fns: dict[str, Callable[[], Any]], runs: int, warmup: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call of each function; the functions are run in turn inside
    each repetition so that background load affects all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def synthetic_scroll(size: tuple[int, int], seed: int = 0) -> bytes:
    """JPEG bytes (quality 90) of a ``size`` = (width, height) px paper-toned image with
    dark ink strokes."""
    width, height = size
    rng = np.random.default_rng(seed)
    img = np.empty((height, width, 3), np.uint8)
    img[:] = (236, 226, 204)
    for _ in range(400):
        y, x = int(rng.integers(0, height - 8)), int(rng.integers(0, width - 8))
        h, w = int(rng.integers(4, max(5, height // 10))), int(rng.integers(2, max(3, width // 20)))
        img[y:y + h, x:x + w] = rng.integers(10, 90)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _draft_decode(data: bytes, min_side: int) -> Image.Image:
    """Decode JPEG ``data`` with Pillow's draft mode so that the longer side stays at
    least ``min_side`` px (the request is made on the stored orientation, which keeps
    it valid whatever the EXIF orientation), as RGB."""
    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        im.draft("RGB", (min_side, 1) if w >= h else (1, min_side))
        return im.convert("RGB")


def _analysis(predictor: Predictor, data: bytes) -> dict[str, float]:
    """One app-style analysis of JPEG ``data``; seconds per stage."""
    t0 = time.perf_counter()
    image = load_image(data)
    t1 = time.perf_counter()
    result = predictor.analyse(image)
    _sync(predictor.device)
    t2 = time.perf_counter()
    for heat in (result.cam, *result.attention.values()):
        overlay(image, heat)
    t3 = time.perf_counter()
    return {"decode": t1 - t0, "analyse": t2 - t1, "overlay": t3 - t2}


def _display_analysis(predictor: Predictor, data: bytes) -> None:
    """The analysis as an app showing a display copy would do it: decode, a copy whose
    longer side is at most :data:`DISPLAY_SIDE` px, maps at that copy's size, overlays
    onto the copy."""
    image = load_image(data)
    display = image.copy()
    display.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    result = predictor.analyse(image, map_size=display.size)
    for heat in (result.cam, *result.attention.values()):
        overlay(display, heat)
    _sync(predictor.device)


def _max_prob_diff(a: dict[str, float], b: dict[str, float]) -> float:
    return max(abs(a[k] - b[k]) for k in a)


def _write_scan_folder(folder: Path, count: int, size: tuple[int, int]) -> None:
    """``count`` distinct synthetic JPEGs of ``size`` px in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"img{i:04d}.jpg").write_bytes(synthetic_scroll(size, seed=i))


def bench_model(predictor: Predictor, folder: Path, settings: Settings, scan_folder: Path,
                work: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Every per-model figure of ``predictor`` (loaded from ``folder``; see the module
    docstring) and the reasons for figures left null, by figure name."""
    device, size = predictor.device, predictor.preprocessor.size
    backbone = predictor.card["model"].get("backbone")
    figures: dict[str, Any] = {"folder": str(folder), "arch": predictor.card["model"]["arch"],
                               "backbone": backbone, "image_size": size, "version": predictor.version}
    try:
        trunk = create_trunk(backbone, pretrained=None).to(device).eval()
        no_baseline = ""
    except Exception as err:  # e.g. smallcnn has no timm backbone
        trunk = None
        no_baseline = f"no timm trunk for backbone {backbone!r}: {err}"
    model = predictor.model
    x1 = torch.randn(1, 3, size, size, device=device)
    scroll = synthetic_scroll(settings.scroll)
    runs, warmup = settings.runs, settings.warmup

    with torch.inference_mode():
        fns: dict[str, Callable[[], Any]] = {"forward": lambda: model(x1)}
        if trunk is not None:
            fns["baseline"] = lambda: trunk.forward_features(x1)
        single = timed_medians(fns, runs, warmup, device)
    stages: dict[str, list[float]] = {"decode": [], "analyse": [], "overlay": []}
    for i in range(warmup + runs):
        timing = _analysis(predictor, scroll)
        if i >= warmup:
            for k, v in timing.items():
                stages[k].append(v)
    breakdown = {k: statistics.median(v) * 1000 for k, v in stages.items()}
    totals = [sum(parts) for parts in zip(*stages.values())]
    figures["baseline_forward_ms"] = single["baseline"] * 1000 if "baseline" in single else None
    figures["forward_ms"] = single["forward"] * 1000
    figures["analysis_ms"] = statistics.median(totals) * 1000
    figures["analysis_breakdown_ms"] = breakdown

    figures["throughput_ips"] = {}
    figures["baseline_throughput_ips"] = {} if trunk is not None else None
    for b in settings.batch_sizes:
        xb = torch.randn(b, 3, size, size, device=device)
        with torch.inference_mode():
            fns = {"model": lambda: model(xb)}
            if trunk is not None:
                fns["baseline"] = lambda: trunk.forward_features(xb)
            med = timed_medians(fns, runs, warmup, device)
        figures["throughput_ips"][str(b)] = b / med["model"]
        if trunk is not None:
            figures["baseline_throughput_ips"][str(b)] = b / med["baseline"]

    figures["options"] = _options(predictor, settings, scroll)

    batch = settings.batch_sizes[-1]
    scanner = Predictor.from_folder(folder, device)
    seconds = []
    for i in range(warmup + runs):
        out = work / f"scan-{predictor.task}-{i}.csv"
        summary = scan(scan_folder, out, scanner, batch_size=batch, workers=default_workers(), progress=False)
        out.unlink()
        if i >= warmup:
            seconds.append(summary.seconds)
    figures["scan_throughput_ips"] = settings.scan_images / statistics.median(seconds)

    base = figures["baseline_forward_ms"]
    base_ips = (figures["baseline_throughput_ips"] or {}).get(str(batch))
    figures["ratios"] = {
        "forward_over_baseline": None if base is None else figures["forward_ms"] / base,
        "analysis_over_baseline": None if base is None else figures["analysis_ms"] / base,
        "scan_over_baseline_throughput": None if base_ips is None else figures["scan_throughput_ips"] / base_ips,
    }
    keys = ("baseline_forward_ms", "baseline_throughput_ips", "ratios")
    return figures, {key: no_baseline for key in keys} if no_baseline else {}


def _options(predictor: Predictor, settings: Settings, scroll: bytes) -> dict[str, Any]:
    """Candidate speed-ups, each against the default path (see the module docstring)."""
    device, size, model = predictor.device, predictor.preprocessor.size, predictor.model
    image = load_image(scroll)
    reference = predictor.predict([image])[0].probabilities
    b = settings.batch_sizes[-1]
    x1 = torch.randn(1, 3, size, size, device=device)
    xb = torch.randn(b, 3, size, size, device=device)
    try:
        model.to(memory_format=torch.channels_last)
        x1_cl, xb_cl = (t.contiguous(memory_format=torch.channels_last) for t in (x1, xb))
        with torch.inference_mode():
            single = timed_medians({"cl": lambda: model(x1_cl)}, settings.runs, settings.warmup, device)
            batch = timed_medians({"cl": lambda: model(xb_cl)}, settings.runs, settings.warmup, device)
        channels_last = {"forward_ms": single["cl"] * 1000, "batch": b, "throughput_ips": b / batch["cl"],
                         "max_prob_diff": _max_prob_diff(reference, predictor.predict([image])[0].probabilities)}
    finally:
        model.to(memory_format=torch.contiguous_format)
    decode = timed_medians({"full": lambda: load_image(scroll), "draft": lambda: _draft_decode(scroll, size)},
                           settings.runs, settings.warmup, device)
    display = timed_medians({"display": lambda: _display_analysis(predictor, scroll)}, settings.runs, settings.warmup,
                            device)
    drafted = predictor.predict([_draft_decode(scroll, size)])[0].probabilities
    return {
        "channels_last": channels_last,
        "jpeg_draft": {"decode_ms": decode["draft"] * 1000, "full_decode_ms": decode["full"] * 1000,
                       "decoded_size": list(_draft_decode(scroll, size).size),
                       "max_prob_diff": _max_prob_diff(reference, drafted)},
        "display_copy": {"analysis_ms": display["display"] * 1000, "display_side_px": DISPLAY_SIDE},
    }


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process in MiB (None where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def _proc_peak_rss_mb(pid: int) -> float | None:
    """``VmHWM`` (peak resident memory) of process ``pid`` in MiB, Linux only."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def cold_start(timeout: float = COLD_START_TIMEOUT_S) -> tuple[float | None, float | None, str | None]:
    """(seconds to the first answered HTTP request, the app's peak RSS in MiB, reason
    if not measured) for ``python -m inkapp serve`` on a free port."""
    if importlib.util.find_spec("inkapp.ui.app") is None:
        return None, None, "inkapp.ui.app does not exist yet (the app is not importable)"
    with tempfile.TemporaryDirectory(prefix="inkapp-cold-start-") as tmp:
        start = time.perf_counter()
        try:
            with serve_app(Path(tmp) / "serve.log", timeout=timeout) as (_, proc):
                return time.perf_counter() - start, _proc_peak_rss_mb(proc.pid), None
        except AppStartError as err:
            return None, None, str(err).splitlines()[0]


def _check(value: float | None, comparison: str, limit: float) -> bool | None:
    if value is None:
        return None
    return value <= limit if comparison == "<=" else value >= limit


def checks(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every figure that has a target, with its value and pass (True/False; None if unmeasured)."""
    rows = []
    for task, figures in doc["models"].items():
        for name, value in figures["ratios"].items():
            comparison, limit = TARGETS[name]
            rows.append({"figure": f"{task}.{name}", "value": value, "target": f"{comparison} {limit:g}",
                         "pass": _check(value, comparison, limit)})
    for name in ("cold_start_s", "peak_rss_mb"):
        comparison, limit = TARGETS[name]
        rows.append({"figure": name, "value": doc[name], "target": f"{comparison} {limit:g}",
                     "pass": _check(doc[name], comparison, limit)})
    return rows


def measure(tasks: list[str] | None = None, quick: bool = False, threads: int | None = None,
            log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Run the benchmark with ``threads`` torch threads (default: the usable cores);
    the JSON-ready document (see the module docstring)."""
    settings = Settings.quick() if quick else Settings.full()
    cores = usable_cores()
    torch.set_num_threads(threads or cores)
    device = default_device()
    wanted = tasks or TASKS
    folders = {t: shipped_weights(t) for t in wanted if (shipped_weights(t) / "card.json").is_file()}
    reasons: dict[str, str] = {}
    doc: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                    "device": str(device), "cpu_cores": cores, "torch_threads": torch.get_num_threads(),
                    "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "settings": {"quick": quick, "runs": settings.runs, "warmup": settings.warmup,
                     "scroll_px": list(settings.scroll),
                     "batch_sizes": list(settings.batch_sizes), "scan_images": settings.scan_images,
                     "scan_image_px": list(settings.scan_size), "scan_workers": default_workers()},
        "weights_root": str(weights_root()),
        "targets": {name: f"{comparison} {limit:g}" for name, (comparison, limit) in TARGETS.items()},
        "models": {},
        "reasons": reasons,
    }
    missing = [t for t in wanted if t not in folders]
    if missing:
        reasons["missing_models"] = f"no model folder for {', '.join(missing)} under {weights_root()}"
    predictors = {}
    for task, folder in folders.items():
        log(f"loading {task} from {folder}")
        predictors[task] = Predictor.from_folder(folder, device)
    work = Path(tempfile.mkdtemp(prefix="inkapp-bench-"))
    try:
        scan_folder = work / "collection"
        _write_scan_folder(scan_folder, settings.scan_images, settings.scan_size)
        for task, predictor in predictors.items():
            log(f"measuring {task}")
            figures, model_reasons = bench_model(predictor, folders[task], settings, scan_folder, work)
            doc["models"][task] = figures
            reasons.update({f"{task}.{k}": v for k, v in model_reasons.items()})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc["peak_rss_mb"] = peak_rss_mb()
    if doc["peak_rss_mb"] is None:
        reasons["peak_rss_mb"] = "the resource module is not available on this platform"
    if settings.cold_start:
        log("measuring the app's cold start")
        doc["cold_start_s"], doc["app_rss_mb"], why = cold_start()
    else:
        doc["cold_start_s"], doc["app_rss_mb"], why = None, None, "skipped in --quick mode"
    if why:
        reasons["cold_start_s"] = reasons["app_rss_mb"] = why
    elif doc["app_rss_mb"] is None:
        reasons["app_rss_mb"] = "/proc/<pid>/status is not available on this platform"
    doc["machine"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    doc["checks"] = checks(doc)
    return doc


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def render_table(doc: dict[str, Any]) -> str:
    """The bench document as a plain-text report."""
    m, s = doc["machine"], doc["settings"]
    lines = [f"device {m['device']}, {m['cpu_cores']} cores, torch threads {m['torch_threads']}, "
             f"load average {m['load_average_start']} -> {m['load_average_end']}; "
             f"medians of {s['runs']} runs after {s['warmup']} warm-up" + (" (QUICK)" if s["quick"] else "")]
    big = str(s["batch_sizes"][-1])
    header = (f"{'task':20} {'arch':10} {'size':>4} {'base ms':>8} {'fwd ms':>8} {'anal. ms':>9} "
              f"{'base ips':>9} {'model ips':>9} {'scan ips':>9} {'fwd/b':>6} {'anal/b':>7} {'scan/b':>7}")
    lines += ["", header, "-" * len(header)]
    for task, f in doc["models"].items():
        r = f["ratios"]
        lines.append(
            f"{task:20} {f['arch']:10} {f['image_size']:>4} {_fmt(f['baseline_forward_ms']):>8} "
            f"{_fmt(f['forward_ms']):>8} "
            f"{_fmt(f['analysis_ms']):>9} {_fmt((f['baseline_throughput_ips'] or {}).get(big)):>9} "
            f"{_fmt(f['throughput_ips'].get(big)):>9} {_fmt(f['scan_throughput_ips']):>9} "
            f"{_fmt(r['forward_over_baseline'], 2):>6} {_fmt(r['analysis_over_baseline'], 2):>7} "
            f"{_fmt(r['scan_over_baseline_throughput'], 2):>7}")
    if not doc["models"]:
        lines.append("(no models measured)")
    lines += ["", f"throughput (ips) at batch {big}; analysis breakdown (decode / analyse / overlay ms):"]
    for task, f in doc["models"].items():
        b, o = f["analysis_breakdown_ms"], f["options"]
        cl, dr = o["channels_last"], o["jpeg_draft"]
        lines.append(f"  {task:20} {b['decode']:.1f} / {b['analyse']:.1f} / {b['overlay']:.1f}; "
                     f"channels_last fwd {cl['forward_ms']:.1f} ms, {cl['throughput_ips']:.1f} ips "
                     f"(|Δp| {cl['max_prob_diff']:.1e}); JPEG draft decode {dr['decode_ms']:.1f} vs "
                     f"{dr['full_decode_ms']:.1f} ms (|Δp| {dr['max_prob_diff']:.1e}); analysis on a "
                     f"{o['display_copy']['display_side_px']} px display copy "
                     f"{o['display_copy']['analysis_ms']:.1f} ms")
    lines += ["", f"peak RSS {_fmt(doc['peak_rss_mb'], 0)} MiB; app cold start {_fmt(doc['cold_start_s'])} s, "
                  f"app RSS {_fmt(doc['app_rss_mb'], 0)} MiB", "", "targets:"]
    for c in doc["checks"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[c["pass"]]
        lines.append(f"  {verdict}  {c['figure']:48} {_fmt(c['value'], 2):>9}  (target {c['target']})")
    for key, why in doc["reasons"].items():
        lines.append(f"  note: {key}: {why}")
    return "\n".join(lines)


def run_bench(tasks: list[str] | None = None, quick: bool = False, as_json: bool = False, out: str | None = None,
              threads: int | None = None) -> int:
    """CLI entry: measure, print the table (or the JSON document), optionally write the
    JSON to ``out``. Returns 0 (targets missed are reported, not an error)."""
    unknown = [t for t in tasks or [] if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    doc = measure(tasks, quick, threads, log=lambda s: print(f"bench: {s}", file=sys.stderr, flush=True))
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    if out:
        Path(out).write_text(text + "\n", encoding="utf-8")
    print(text if as_json else render_table(doc))
    return 0
