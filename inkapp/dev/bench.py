"""``inkapp bench``: speed and memory of the shipped models, checked against targets.

For every task whose model folder exists (:func:`inkapp.paths.shipped_weights`) it
measures, on the default device (CUDA when present) with ``torch.set_num_threads`` =
the usable CPU cores (``--threads`` overrides it, e.g. on a machine busy with other work,
where more threads than free cores makes every parallel region wait):

* ``baseline_forward_ms`` — the BASELINE: the bare timm trunk of the model's backbone
  (``create_trunk(backbone, pretrained=None).forward_features``), batch 1, at the
  model's input size, under ``torch.inference_mode``;
* ``forward_ms`` — the model's forward, batch 1, same input, ``inference_mode``;
* ``analysis_ms`` — what the app does for one upload
  (:func:`inkapp.curation.analysis.load_upload` and ``analyse_loaded``): decode a
  synthetic 1000×3000 px hanging-scroll JPEG from bytes
  (:func:`~inkapp.data.images.decode_image`), hand the display copy
  (:func:`inkapp.curation.analysis.display_copy`) to a worker thread, run
  :meth:`~inkapp.inference.Predictor.analyse` meanwhile (preprocess + one forward + the Grad-CAM
  backward + attention maps of the same pass, maps at the display copy's size), wait for
  the display copy, then
  :func:`~inkapp.explain.overlay.overlay` of the heat map onto the display copy (the
  attention maps' overlays are drawn only when a researcher opens that section:
  ``attention_overlays_ms``, timed in the same loop, not part of ``analysis_ms``);
  ``analysis_breakdown_ms`` splits it into ``decode``, ``display``, ``analyse`` and ``overlay``;
* ``baseline_throughput_ips`` / ``throughput_ips`` — images per second of the bare
  trunk / the model at each batch size (8 and 64, each capped by the pixel budget
  ``batch_pixels``, :func:`inkapp.scan.default_batch_pixels` of the device unless set:
  on CPU 2**18, so 4 at 256 px, 1 at 512 px, 8 and 16 at 128 px; on CUDA 8 and 64),
  ``inference_mode``;
* ``scan_throughput_ips`` — images per second of :func:`inkapp.scan.scan` with the
  predictor ``inkapp scan`` uses (decoding workers, preprocessing, model, CSV) over a
  generated folder of the task's kind of input (:data:`SCAN_INPUTS`: 640×480 JPEGs;
  64×64 grayscale PNG characters for the calligrapher; 256 and 1024 of them in a full
  run) at the largest batch size, worker start-up included, and ``scan_hours_per_100k``,
  the hours 100 000 such images take at that rate;
* ``options`` — candidate speed-ups measured next to the defaults: ``jpeg_draft``
  (Pillow's DCT-domain downscaling while decoding the scroll, never below the model's
  input size: decode ms and largest |Δprobability| of the prediction) and
  ``full_size_maps`` (the analysis as it was before issue 18: maps and overlays at
  the scroll's full 1000×3000 size, no display copy: ms);
* ratios ``forward_over_baseline``, ``analysis_over_baseline`` (both against
  ``baseline_forward_ms``) and ``scan_over_baseline_throughput`` (against the trunk's
  throughput at the scan's batch size ``scan_batch``). The baseline trunk runs in the
  default (contiguous) memory format, as when the targets were set; the model runs
  channels-last (:class:`~inkapp.inference.Predictor`). ``baseline_cl_forward_ms`` /
  ``baseline_cl_throughput_ips`` time a channels-last copy of the trunk with its batch
  norms folded (:func:`inkapp.models.fold.inference_form`, as every Predictor runs its model) in the same
  loops and ``ratios_channels_last_baseline`` holds the same ratios against it — the
  stricter comparison, reported, not checked.

Where a task also ships a seed ensemble (``weights/<task>/ensemble``, what ``inkapp scan
--ensemble`` runs), the same per-model figures of the ensemble are measured against the same
trunk and reported under ``ensembles.<task>`` (with ``members`` and ``tta_hflip``); they have
no targets, since the app and the checks use the single model. They are measured after every
single model, one at a time; ``peak_rss_mb`` is read before them and
``ensembles_peak_rss_mb`` (the process's peak including them) after.

Global figures: ``peak_rss_mb`` — peak resident memory of the bench process in MiB
with every model loaded and exercised; ``scan_worker_peak_rss_mb`` — the largest peak
of any of the scans' decoding worker processes; ``cold_start_s`` — seconds from
starting ``python -m inkapp serve`` to its first answered HTTP request;
``app_rss_mb`` — the app's peak resident memory at that moment (Linux only).

Baseline and candidate are timed alternately inside one loop, so background load hits
both alike; every time figure is the median over the timed runs (after warm-up). A
figure that could not be measured is ``null`` and its reason is in ``reasons``.
"""
from __future__ import annotations

import gc
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
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from inkapp.curation.analysis import load_upload, spatial_maps
from inkapp.data.images import load_image
from inkapp.explain.overlay import overlay
from inkapp.device import default_device, usable_cores
from inkapp.inference import Predictor
from inkapp.models import create_trunk
from inkapp.models.fold import inference_form
from inkapp.paths import shipped_ensemble, shipped_weights, weights_root
from inkapp.tasks import TASKS
from inkapp.scan import batch_for, default_batch_pixels, default_workers, scan
from inkapp.dev.procs import AppStartError, serve_app

#: figure -> (comparison, limit); ratios are per model, the others global.
TARGETS: dict[str, tuple[str, float]] = {
    "analysis_over_baseline": ("<=", 3.0),
    "forward_over_baseline": ("<=", 1.3),
    "scan_over_baseline_throughput": (">=", 0.8),
    "cold_start_s": ("<=", 15.0),
    "peak_rss_mb": ("<=", 2048.0),
    "scan_worker_peak_rss_mb": ("<=", 2048.0),
}
MODEL_FIGURES = ("baseline_forward_ms", "baseline_cl_forward_ms", "forward_ms", "analysis_ms", "analysis_breakdown_ms",
                 "attention_overlays_ms",
                 "batch_sizes", "baseline_throughput_ips", "baseline_cl_throughput_ips", "throughput_ips",
                 "scan_batch", "scan_throughput_ips", "scan_hours_per_100k", "options", "ratios", "ratios_channels_last_baseline")
GLOBAL_FIGURES = ("peak_rss_mb", "scan_worker_peak_rss_mb", "cold_start_s", "app_rss_mb")
COLD_START_TIMEOUT_S = 180.0
#: task -> (kind, (width, height) px) of the images its scan figure reads; other tasks: :data:`DEFAULT_SCAN_INPUT`.
SCAN_INPUTS: dict[str, tuple[str, tuple[int, int]]] = {"calligrapher": ("character", (64, 64))}
DEFAULT_SCAN_INPUT = ("scroll", (640, 480))
CHARACTER_SCAN_FACTOR = 4  # character folders hold this many times ``scan_images`` (a 64 px scan is ~10× faster)


@dataclass(frozen=True)
class Settings:
    """How much work one bench run does.

    ``runs`` — timed repetitions per figure (median reported); ``warmup`` — untimed
    repetitions first; ``scroll`` — (width, height) of the synthetic scroll, px;
    ``batch_sizes`` — throughput batch sizes, each capped by ``batch_pixels`` model-input
    pixels (:func:`inkapp.scan.batch_for`; the last is also the scan's);
    ``scan_images`` — images in each generated scan folder (their kind and size:
    :data:`SCAN_INPUTS`, divided by ``scan_shrink``); ``cold_start`` — measure the app's
    start-up.
    """

    runs: int
    warmup: int
    scroll: tuple[int, int]
    batch_sizes: tuple[int, ...]
    scan_images: int
    cold_start: bool
    batch_pixels: int | None = None
    scan_shrink: int = 1

    @classmethod
    def full(cls) -> "Settings":
        return cls(runs=10, warmup=2, scroll=(1000, 3000), batch_sizes=(8, 64), scan_images=256, cold_start=True)

    @classmethod
    def quick(cls) -> "Settings":
        return cls(runs=1, warmup=1, scroll=(300, 900), batch_sizes=(2, 4), scan_images=8, cold_start=False,
                   scan_shrink=4)

    def batches(self, image_size: int, device: torch.device) -> list[int]:
        """The throughput batch sizes at ``image_size`` px on ``device``, capped by the pixel
        budget (``batch_pixels``, None: the device's default; distinct, ascending)."""
        return sorted({batch_for(image_size, self.batch_pixels, b, device) for b in self.batch_sizes})

    def scan_input(self, task: str) -> tuple[int, str, tuple[int, int]]:
        """(count, kind, (width, height) px) of the images in ``task``'s scan folder."""
        kind, (w, h) = SCAN_INPUTS.get(task, DEFAULT_SCAN_INPUT)
        count = self.scan_images * (CHARACTER_SCAN_FACTOR if kind == "character" else 1)
        return count, kind, (max(16, w // self.scan_shrink), max(16, h // self.scan_shrink))


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


def synthetic_character(side: int, seed: int = 0) -> bytes:
    """PNG bytes of a ``side``×``side`` grayscale paper-white tile with dark strokes,
    like the 64 px character crops of the calligrapher data."""
    rng = np.random.default_rng(seed)
    img = np.full((side, side), 235, np.uint8)
    for _ in range(6):
        y, x = (int(v) for v in rng.integers(side // 8, side - side // 4, 2))
        h, w = (int(v) for v in rng.integers(2, max(3, side // 3), 2))
        img[y:y + h, x:x + w] = rng.integers(10, 60)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def _draft_decode(data: bytes, min_side: int) -> Image.Image:
    """Decode JPEG ``data`` with Pillow's draft mode so that the longer side stays at
    least ``min_side`` px (the request is made on the stored orientation), as RGB."""
    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        im.draft("RGB", (min_side, 1) if w >= h else (1, min_side))
        return im.convert("RGB")


def _attention_overlays(predictor: Predictor, result: Any, image: Image.Image) -> list[Image.Image]:
    """The declared spatial attention maps over ``image``: drawn by the app only when a
    researcher opens that section (:attr:`inkapp.curation.analysis.TaskView.attention_overlays`)."""
    return [overlay(image, heat) for heat, _ in spatial_maps(predictor, result)]


def _analysis(predictor: Predictor, data: bytes) -> dict[str, float]:
    """One analysis of JPEG ``data`` as the app does it; seconds per stage. ``decode`` is
    :func:`~inkapp.curation.analysis.load_upload` (decode, hash, display copy handed to a
    worker thread); ``display`` is the wait for that copy after the model pass (near 0
    when the copy was made meanwhile)."""
    t0 = time.perf_counter()
    loaded = load_upload(data, "scroll.jpg")
    t1 = time.perf_counter()
    result = predictor.analyse(loaded.image, map_size=loaded.display_size)
    _sync(predictor.device)
    t2 = time.perf_counter()
    display = loaded.display
    t3 = time.perf_counter()
    overlay(display, result.cam)  # what the app draws with every analysis: the heat map's overlay
    t4 = time.perf_counter()
    _attention_overlays(predictor, result, display)
    t5 = time.perf_counter()
    return {"decode": t1 - t0, "analyse": t2 - t1, "display": t3 - t2, "overlay": t4 - t3, "attention": t5 - t4}


def _full_size_analysis(predictor: Predictor, data: bytes) -> None:
    """The analysis before issue 18: maps and overlays at the image's full size."""
    image = load_image(data)
    result = predictor.analyse(image)
    overlay(image, result.cam)
    _attention_overlays(predictor, result, image)
    _sync(predictor.device)


def _max_prob_diff(a: dict[str, float], b: dict[str, float]) -> float:
    return max(abs(a[k] - b[k]) for k in a)


def _write_scan_folder(folder: Path, count: int, kind: str, size: tuple[int, int]) -> None:
    """``count`` distinct synthetic images in ``folder``: JPEG scrolls of ``size`` px, or
    PNG characters of ``size[0]`` px (``kind`` "character")."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        if kind == "character":
            (folder / f"char{i:05d}.png").write_bytes(synthetic_character(size[0], seed=i))
        else:
            (folder / f"img{i:05d}.jpg").write_bytes(synthetic_scroll(size, seed=i))


def bench_model(predictor: Predictor, folder: Path, settings: Settings, scan_folder: Path,
                work: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Every per-model figure of ``predictor`` (loaded from ``folder``; see the module
    docstring) and the reasons for figures left null, by figure name. The trunk and the
    model run channels-last, as :func:`inkapp.scoring.score_canvases` feeds the model."""
    device, size = predictor.device, predictor.preprocessor.size
    backbone = predictor.card["model"].get("backbone")
    figures: dict[str, Any] = {"folder": str(folder), "arch": predictor.card["model"]["arch"],
                               "backbone": backbone, "image_size": size, "version": predictor.version}
    try:
        trunk = create_trunk(backbone, pretrained=None).to(device).eval()
        trunk_cl = inference_form(create_trunk(backbone, pretrained=None).to(device))  # as the Predictor's model
        no_baseline = ""
    except Exception as err:  # e.g. smallcnn has no timm backbone
        trunk = trunk_cl = None
        no_baseline = f"no timm trunk for backbone {backbone!r}: {err}"
    model = predictor.model
    x1 = torch.randn(1, 3, size, size, device=device)
    x1_cl = x1.contiguous(memory_format=torch.channels_last)
    scroll = synthetic_scroll(settings.scroll)
    runs, warmup = settings.runs, settings.warmup

    # baseline, forward and the analysis's stages timed in turn inside each repetition
    times: dict[str, list[float]] = {"baseline": [], "baseline_cl": [], "forward": [], "decode": [], "display": [],
                                     "analyse": [], "overlay": [], "attention": []}
    for i in range(warmup + runs):
        timing: dict[str, float] = {}
        with torch.inference_mode():
            if trunk is not None:
                timing["baseline"] = _seconds(lambda: trunk.forward_features(x1), device)
                timing["baseline_cl"] = _seconds(lambda: trunk_cl.forward_features(x1_cl), device)
            timing["forward"] = _seconds(lambda: model(x1_cl), device)
        timing.update(_analysis(predictor, scroll))
        if i >= warmup:
            for k, v in timing.items():
                times[k].append(v)
    stages = ("decode", "display", "analyse", "overlay")
    figures["baseline_forward_ms"] = statistics.median(times["baseline"]) * 1000 if trunk is not None else None
    figures["baseline_cl_forward_ms"] = statistics.median(times["baseline_cl"]) * 1000 if trunk is not None else None
    figures["forward_ms"] = statistics.median(times["forward"]) * 1000
    figures["analysis_ms"] = statistics.median([sum(parts) for parts in zip(*(times[k] for k in stages))]) * 1000
    figures["analysis_breakdown_ms"] = {k: statistics.median(times[k]) * 1000 for k in stages}
    figures["attention_overlays_ms"] = statistics.median(times["attention"]) * 1000

    batches = settings.batches(size, device)
    figures["batch_sizes"] = batches
    figures["throughput_ips"] = {}
    figures["baseline_throughput_ips"] = {} if trunk is not None else None
    out = work / f"scan-{predictor.task}.csv"

    def scan_once() -> None:
        scan(scan_folder, out, predictor, batch_size=batches[-1], workers=default_workers(device),
             batch_pixels=settings.batch_pixels, progress=False)
        out.unlink()

    figures["baseline_cl_throughput_ips"] = {} if trunk is not None else None
    for b in batches:
        xb = torch.randn(b, 3, size, size, device=device)
        xb_cl = xb.contiguous(memory_format=torch.channels_last)
        fns: dict[str, Callable[[], Any]] = {"model": partial(_inference, model, xb_cl)}
        if trunk is not None:
            fns["baseline"] = partial(_inference, trunk.forward_features, xb)
            fns["baseline_cl"] = partial(_inference, trunk_cl.forward_features, xb_cl)
        if b == batches[-1]:  # the scan is timed in the same loop as the trunk it is compared with
            fns["scan"] = scan_once
        med = timed_medians(fns, runs, warmup, device)
        figures["throughput_ips"][str(b)] = b / med["model"]
        if trunk is not None:
            figures["baseline_throughput_ips"][str(b)] = b / med["baseline"]
            figures["baseline_cl_throughput_ips"][str(b)] = b / med["baseline_cl"]
        del xb, xb_cl, fns  # the inputs are freed before the next, larger batch
    figures["scan_throughput_ips"] = settings.scan_input(predictor.task)[0] / med["scan"]
    figures["scan_hours_per_100k"] = 100_000 / figures["scan_throughput_ips"] / 3600
    figures["scan_batch"] = batches[-1]
    figures["options"] = _options(predictor, settings, scroll)

    figures["ratios"] = _ratios(figures, "baseline_forward_ms", "baseline_throughput_ips")
    figures["ratios_channels_last_baseline"] = _ratios(figures, "baseline_cl_forward_ms", "baseline_cl_throughput_ips")
    keys = ("baseline_forward_ms", "baseline_throughput_ips", "ratios")
    return figures, {key: no_baseline for key in keys} if no_baseline else {}


def _ratios(figures: dict[str, Any], forward_key: str, throughput_key: str) -> dict[str, float | None]:
    """The three target ratios against the baseline figures ``forward_key`` (ms) and
    ``throughput_key`` (ips by batch; the scan's batch is used)."""
    base = figures[forward_key]
    base_ips = (figures[throughput_key] or {}).get(str(figures["scan_batch"]))
    return {
        "forward_over_baseline": None if base is None else figures["forward_ms"] / base,
        "analysis_over_baseline": None if base is None else figures["analysis_ms"] / base,
        "scan_over_baseline_throughput": None if base_ips is None else figures["scan_throughput_ips"] / base_ips,
    }


def _seconds(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall-clock seconds of one call of ``fn`` (CUDA work included)."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _inference(fn: Callable[[torch.Tensor], Any], x: torch.Tensor) -> None:
    """``fn(x)`` under ``torch.inference_mode``."""
    with torch.inference_mode():
        fn(x)


def _options(predictor: Predictor, settings: Settings, scroll: bytes) -> dict[str, Any]:
    """Candidate speed-ups, each against the default path (see the module docstring)."""
    device, size = predictor.device, predictor.preprocessor.size
    reference = predictor.predict([load_image(scroll)])[0].probabilities
    timed = timed_medians({"full": lambda: load_image(scroll), "draft": lambda: _draft_decode(scroll, size),
                           "full_size_maps": lambda: _full_size_analysis(predictor, scroll)},
                          settings.runs, settings.warmup, device)
    drafted = predictor.predict([_draft_decode(scroll, size)])[0].probabilities
    return {
        "jpeg_draft": {"decode_ms": timed["draft"] * 1000, "full_decode_ms": timed["full"] * 1000,
                       "decoded_size": list(_draft_decode(scroll, size).size),
                       "max_prob_diff": _max_prob_diff(reference, drafted)},
        "full_size_maps": {"analysis_ms": timed["full_size_maps"] * 1000},
    }


def peak_rss_mb(children: bool = False) -> float | None:
    """Peak resident memory in MiB of this process, or (``children``) the largest peak of
    its finished child processes; None where ``resource`` is missing."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF).ru_maxrss
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
    for name in ("cold_start_s", "peak_rss_mb", "scan_worker_peak_rss_mb"):
        comparison, limit = TARGETS[name]
        rows.append({"figure": name, "value": doc[name], "target": f"{comparison} {limit:g}",
                     "pass": _check(doc[name], comparison, limit)})
    return rows


def measure(tasks: list[str] | None = None, quick: bool = False, threads: int | None = None,
            log: Callable[[str], None] = lambda s: None, runs: int | None = None) -> dict[str, Any]:
    """Run the benchmark with ``threads`` torch threads (default: the usable cores) and
    ``runs`` timed repetitions per figure (default: the settings'); the JSON-ready
    document (see the module docstring)."""
    settings = Settings.quick() if quick else Settings.full()
    if runs is not None:
        settings = replace(settings, runs=runs)
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
                     "batch_sizes": list(settings.batch_sizes),
                     "batch_pixels": settings.batch_pixels or default_batch_pixels(device),
                     "scan_images": settings.scan_images,
                     "scan_inputs": {t: [n, kind, list(px)] for t in wanted for n, kind, px in [settings.scan_input(t)]},
                     "scan_workers": default_workers(device)},
        "weights_root": str(weights_root()),
        "targets": {name: f"{comparison} {limit:g}" for name, (comparison, limit) in TARGETS.items()},
        "models": {},
        "ensembles": {},
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
        for task, predictor in predictors.items():
            log(f"measuring {task}")
            scan_folder = work / f"collection-{task}"
            _write_scan_folder(scan_folder, *settings.scan_input(task))
            figures, model_reasons = bench_model(predictor, folders[task], settings, scan_folder, work)
            doc["models"][task] = figures
            reasons.update({f"{task}.{k}": v for k, v in model_reasons.items()})
        # the checked memory figures are the single models' (what the app and `scan` load) ...
        single_rss, single_workers = peak_rss_mb(), peak_rss_mb(children=True)
        predictors.clear()
        gc.collect()
        for task in folders:  # ... the ensembles come after, one at a time, reported apart
            ensemble = shipped_ensemble(task)
            if (ensemble / "card.json").is_file():
                log(f"measuring the {task} ensemble from {ensemble}")
                members = Predictor.from_folder(ensemble, device)
                figures, model_reasons = bench_model(members, ensemble, settings, work / f"collection-{task}", work)
                figures["members"], figures["tta_hflip"] = len(members.card["members"]), members.scoring.tta_hflip
                doc["ensembles"][task] = figures
                reasons.update({f"{task}.ensemble.{k}": v for k, v in model_reasons.items()})
                del members
                gc.collect()
        if doc["ensembles"]:
            doc["ensembles_peak_rss_mb"] = peak_rss_mb()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc["peak_rss_mb"], doc["scan_worker_peak_rss_mb"] = single_rss, single_workers  # before the app's start
    if doc["peak_rss_mb"] is None:
        reasons["peak_rss_mb"] = reasons["scan_worker_peak_rss_mb"] = "the resource module is not available"
    elif not doc["models"]:
        reasons["scan_worker_peak_rss_mb"] = "no decoding worker ran"
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
    header = (f"{'task':20} {'arch':10} {'size':>4} {'base ms':>8} {'fwd ms':>8} {'anal. ms':>9} {'batch':>5} "
              f"{'base ips':>9} {'model ips':>9} {'scan ips':>9} {'fwd/b':>6} {'anal/b':>7} {'scan/b':>7}")
    lines += ["", header, "-" * len(header)]
    rows = [(task, f) for task, f in doc["models"].items()]
    rows += [(f"{task} ens.{f['members']}{'+flip' if f['tta_hflip'] else ''}", f) for task, f in doc["ensembles"].items()]
    for task, f in rows:
        r, big = f["ratios"], str(f["scan_batch"])
        lines.append(
            f"{task:20} {f['arch']:10} {f['image_size']:>4} {_fmt(f['baseline_forward_ms']):>8} "
            f"{_fmt(f['forward_ms']):>8} {_fmt(f['analysis_ms']):>9} {big:>5} "
            f"{_fmt((f['baseline_throughput_ips'] or {}).get(big)):>9} "
            f"{_fmt(f['throughput_ips'].get(big)):>9} {_fmt(f['scan_throughput_ips']):>9} "
            f"{_fmt(r['forward_over_baseline'], 2):>6} {_fmt(r['analysis_over_baseline'], 2):>7} "
            f"{_fmt(r['scan_over_baseline_throughput'], 2):>7}")
    if not doc["models"]:
        lines.append("(no models measured)")
    lines += ["", "throughput (ips) at the scan's batch (pixel budget "
                  f"{s['batch_pixels']} px); analysis breakdown (decode / display / analyse / overlay ms):"]
    for task, f in rows:
        b, o = f["analysis_breakdown_ms"], f["options"]
        dr = o["jpeg_draft"]
        lines.append(f"  {task:20} {b['decode']:.1f} / {b['display']:.1f} / {b['analyse']:.1f} / {b['overlay']:.1f}; "
                     f"attention overlays on opening {f['attention_overlays_ms']:.1f} ms; "
                     f"JPEG draft decode {dr['decode_ms']:.1f} vs {dr['full_decode_ms']:.1f} ms "
                     f"(|Δp| {dr['max_prob_diff']:.1e}, not used); maps and overlays at full size "
                     f"{o['full_size_maps']['analysis_ms']:.1f} ms; 100 000 images scanned in "
                     f"{f['scan_hours_per_100k']:.2f} h")
    lines += ["", f"peak RSS {_fmt(doc['peak_rss_mb'], 0)} MiB (scan workers "
                  f"{_fmt(doc['scan_worker_peak_rss_mb'], 0)} MiB); app cold start {_fmt(doc['cold_start_s'])} s, "
                  f"app RSS {_fmt(doc['app_rss_mb'], 0)} MiB"]
    if doc["ensembles"]:
        lines.append("ensembles (`inkapp scan --ensemble`; each member runs every view): reported against the bare "
                     "trunk, no targets — the app and the checks use the single model; peak RSS with them "
                     f"{_fmt(doc.get('ensembles_peak_rss_mb'), 0)} MiB")
    lines += ["", "targets:"]
    for c in doc["checks"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[c["pass"]]
        lines.append(f"  {verdict}  {c['figure']:48} {_fmt(c['value'], 2):>9}  (target {c['target']})")
    for key, why in doc["reasons"].items():
        lines.append(f"  note: {key}: {why}")
    return "\n".join(lines)


def run_bench(tasks: list[str] | None = None, quick: bool = False, as_json: bool = False, out: str | None = None,
              threads: int | None = None, runs: int | None = None) -> int:
    """CLI entry: measure, print the table (or the JSON document), optionally write the
    JSON to ``out``. Returns 0 (targets missed are reported, not an error)."""
    unknown = [t for t in tasks or [] if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    if runs is not None and runs < 1:
        raise ValueError(f"--runs must be >= 1, got {runs}")
    doc = measure(tasks, quick, threads, log=lambda s: print(f"bench: {s}", file=sys.stderr, flush=True), runs=runs)
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    if out:
        Path(out).write_text(text + "\n", encoding="utf-8")
    print(text if as_json else render_table(doc))
    return 0
