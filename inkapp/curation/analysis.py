"""Browser-free analysis behind the Analyse tab (no Gradio, no plotly).

:func:`analyse_image` takes image bytes (or a path), decides the domain, runs every task
model of that domain once (prediction + heat map + attention maps in one pass, see
:meth:`inkapp.inference.Predictor.analyse`) and returns what the curator sees per task:
label, confidence, uncertain flag, dynasty, probabilities, the CAM overlay, the model's
own attention overlays with the captions the model declares
(:mod:`inkapp.explain.contract`), gate weights and channel weights; ``inkapp.ui`` draws
the charts. All maps are
produced at the size of a display copy (longest side ≤ :data:`DISPLAY_MAX_SIDE`) with
the image's true aspect ratio. Raw maps are cached (:class:`AnalysisCache`) so moving
the opacity slider or switching back to an image does not run the model again; the
cache is bounded in bytes and idle time and keeps the maps as 8-bit levels.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from inkapp.data.images import decode_image, env_number, sha256_bytes
from inkapp.device import usable_cores
from inkapp.explain.cam import CAM_METHODS
from inkapp.explain.contract import MapInfo, map_infos
from inkapp.explain.overlay import heat_levels, overlay
from inkapp.inference import Analysis, Predictor
from inkapp.tasks import TASKS_BY_DOMAIN

from .wording import Bilingual, confidence_word, heat_reading

from .domain import AUTO, DomainDecision, decide_domain
from .hub import ModelHub
from .memory import BudgetCache, session_ttl_s
from .uploads import UploadItem

DISPLAY_MAX_SIDE = 1024
#: A long scroll's display copy keeps at least this short side (up to :data:`SCROLL_MAX_SIDE`
#: on the long side), so it can be shown at a readable height rather than as a thin strip.
SCROLL_MIN_SHORT_SIDE = 400
SCROLL_MAX_SIDE = 4096
#: Images whose longest side is below this are enlarged by a whole factor (nearest
#: neighbour: a 64 px character keeps its crisp brush edges) for display and heat maps.
SMALL_IMAGE_SIDE = 256
COLORMAP = "inferno"
DEFAULT_CAM = "gradcam"
ENV_ANALYSIS_CACHE_MB = "INKAPP_ANALYSIS_CACHE_MB"
ANALYSIS_CACHE_MB = 128  # default byte budget of the analysis-map cache, MiB
#: Threads that make display copies beside the model passes (one per usable core).
DISPLAY_WORKERS = ThreadPoolExecutor(max_workers=usable_cores(), thread_name_prefix="inkapp-display")


@dataclass(frozen=True)
class LoadedImage:
    """A decoded upload: its bytes' SHA-256, the full image and a display copy.

    ``shown`` is the display copy, or its :class:`~concurrent.futures.Future` while
    :func:`load_upload` still has it made on a worker thread (the models run meanwhile);
    :attr:`display` waits for it, :attr:`display_size` does not.
    """

    name: str
    sha256: str
    data: bytes
    image: Image.Image
    shown: Image.Image | Future[Image.Image]

    @property
    def display(self) -> Image.Image:
        """The display copy (:func:`display_copy`), waiting for it if it is still being made."""
        return self.shown.result() if isinstance(self.shown, Future) else self.shown

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) of the display copy, known before it is made."""
        return display_size(self.image.size)


@dataclass(frozen=True)
class TaskView:
    """Everything the Analyse tab shows for one task of one image.

    When the task has no usable model only ``task`` and ``error`` are meaningful. The
    heat map's overlay is drawn with the view; the attention overlays only when
    :attr:`attention_overlays` is first read.
    """

    task: str
    error: str = ""
    model_version: str = ""
    classes: list[str] = field(default_factory=list)
    label: str = ""
    confidence: float = 0.0
    uncertain: bool = False
    answer_set: tuple[str, ...] = ()  # the conformal set (class keys, most likely first), when calibrated
    threshold: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    dynasties: list[tuple[str, float]] = field(default_factory=list)
    cam_method: str = ""
    cam_target: str = ""
    cam_overlay: Image.Image | None = None
    attention_maps: list[tuple[np.ndarray, MapInfo]] = field(default_factory=list)  # display size, [0, 1]
    shown_on: Image.Image | None = None  # the display copy the overlays are drawn on
    opacity: float = 0.5
    gates: list[tuple[MapInfo, float]] = field(default_factory=list)
    channel_weights: list[tuple[MapInfo, np.ndarray]] = field(default_factory=list)
    cam_reading: Bilingual = ("", "")

    @cached_property
    def attention_overlays(self) -> list[tuple[Image.Image, MapInfo]]:
        """The model's spatial attention maps drawn over the display copy, with their
        declarations — drawn on first use (the researchers' section opened), not with every
        analysis: an InkFusionNet result has five of them, 3–4 ms each at 1200×400."""
        if self.shown_on is None:
            return []
        return [(overlay(self.shown_on, heat, self.opacity, COLORMAP), info) for heat, info in self.attention_maps]

    @property
    def confidence_word(self) -> Bilingual:
        """"very likely" / "likely" / "uncertain — please review" (see :func:`.wording.confidence_word`)."""
        return confidence_word(self.confidence, self.threshold)

    @property
    def dynasty_text(self) -> str:
        """E.g. ``"Tang 97% · Yuan 3%"`` (empty when the task has no dynasty table)."""
        return " · ".join(f"{name} {p:.0%}" for name, p in self.dynasties)


@dataclass(frozen=True)
class ImageAnalysis:
    """One image's analysis: its identity, size, display copy, domain and per-task views."""

    name: str
    sha256: str
    width: int
    height: int
    display: Image.Image
    domain: DomainDecision
    tasks: list[TaskView]


class AnalysisCache:
    """Thread-safe LRU of raw :class:`Analysis` results keyed by image, model and explanation,
    bounded in bytes (``budget_bytes``, default ``INKAPP_ANALYSIS_CACHE_MB`` or 128 MiB, the
    sum of its maps' ``nbytes``), in entries (``max_entries``) and in idle time (``idle_s``,
    default the session time to live; see :class:`inkapp.curation.memory.BudgetCache`).

    Maps (``cam``, ``attention``; display-size H×W in [0, 1]) are kept as uint8 levels
    ``rint(255·v)``, a quarter of float32: the 256 levels
    :func:`inkapp.explain.overlay.colorize` picks colours by, so every pixel keeps its
    colour-map entry and a blended overlay pixel moves by at most one level. Every
    result, fresh or cached, is returned with its maps as float32 ``level / 255``, so a
    cached view equals the first.
    """

    def __init__(self, max_entries: int = 64, budget_bytes: int | None = None, idle_s: float | None = None) -> None:
        budget = budget_bytes if budget_bytes is not None else \
            int((env_number(ENV_ANALYSIS_CACHE_MB) or ANALYSIS_CACHE_MB) * 2**20)
        self._cache: BudgetCache[Hashable, Analysis] = BudgetCache(
            budget, analysis_bytes, idle_s if idle_s is not None else session_ttl_s(), max_entries)

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def nbytes(self) -> int:
        """Bytes of the maps held (uint8 maps and float32 channel weights)."""
        return self._cache.nbytes

    def get_or_compute(self, key: Hashable, compute: Callable[[], Analysis]) -> Analysis:
        """The cached value for ``key``, else ``compute()`` stored under it (maps as described above)."""
        packed = self._cache.get(key)
        if packed is None:
            packed = _pack(compute())
            self._cache.put(key, packed)
        return _unpack(packed)


def _pack(result: Analysis) -> Analysis:
    return replace(result, cam=heat_levels(result.cam), attention={k: heat_levels(v) for k, v in result.attention.items()})


def _unpack(packed: Analysis) -> Analysis:
    return replace(packed, cam=packed.cam / np.float32(255),
                   attention={k: v / np.float32(255) for k, v in packed.attention.items()})


def analysis_bytes(result: Analysis) -> int:
    """Bytes of an analysis's arrays: the heat map, attention maps and channel weights."""
    return result.cam.nbytes + sum(a.nbytes for a in (*result.attention.values(), *result.channel_weights.values()))


def display_size(size: tuple[int, int], max_side: int = DISPLAY_MAX_SIDE) -> tuple[int, int]:
    """(width, height) of the display copy of an image of ``size``, aspect ratio kept.

    Longest side at most ``max_side``, except that a long scroll keeps a short side of
    up to :data:`SCROLL_MIN_SHORT_SIDE` while its long side stays ≤ :data:`SCROLL_MAX_SIDE`;
    an image whose longest side is below :data:`SMALL_IMAGE_SIDE` is enlarged by the
    smallest whole factor that reaches it.
    """
    w, h = size
    long, short = max(w, h), min(w, h)
    if long < SMALL_IMAGE_SIDE:
        factor = -(-SMALL_IMAGE_SIDE // long)
        return w * factor, h * factor
    scale = min(1.0, max(max_side / long, min(SCROLL_MIN_SHORT_SIDE / short, SCROLL_MAX_SIDE / long)))
    return max(1, round(w * scale)), max(1, round(h * scale))


def display_copy(image: Image.Image, max_side: int = DISPLAY_MAX_SIDE) -> Image.Image:
    """RGB copy of ``image`` at :func:`display_size`.

    Shrinking: a box average over the largest whole factor that keeps at least the
    display size (Pillow's ``reduce``), then bicubic for the remaining step of less than
    2× (OpenCV). A 3000×1000 scroll's 1200×400 copy takes 3.7 ms this way against 12.9 ms
    for Pillow's Lanczos after the same box step; pixels are 2.2 levels from a pure
    Lanczos resize on average (1.5 before) — a display copy, never a model input.
    Enlarging a small image: nearest neighbour by a whole factor (crisp brush edges).
    An ``L`` image is resized before it is made RGB.
    """
    size = display_size(image.size, max_side)
    if size == image.size:
        return image.convert("RGB")
    source = image if image.mode in ("RGB", "L") else image.convert("RGB")
    if size[0] > source.size[0]:
        return source.resize(size, Image.Resampling.NEAREST).convert("RGB")
    factor = min(source.size[0] // size[0], source.size[1] // size[1])
    if factor > 1:
        source = source.reduce(factor)
    if source.size != size:
        source = Image.fromarray(cv2.resize(np.asarray(source), size, interpolation=cv2.INTER_CUBIC))
    return source if source.mode == "RGB" else source.convert("RGB")  # a new image either way


def load_upload(data: bytes, name: str) -> LoadedImage:
    """Decode uploaded bytes (:class:`inkapp.data.images.ImageError` with a one-line
    message for anything unacceptable). The display copy is made on a worker thread
    (:data:`DISPLAY_WORKERS`), so the analysis can start at once: Pillow and OpenCV
    release the GIL while they resample, and the models need only its size."""
    image, _ = decode_image(data)
    return LoadedImage(name=name, sha256=sha256_bytes(data), data=data, image=image,
                       shown=DISPLAY_WORKERS.submit(display_copy, image))


def dynasty_probabilities(probabilities: dict[str, float], dynasty_of: dict[str, str]) -> list[tuple[str, float]]:
    """Probability per dynasty (the sum over its classes), most likely first; classes
    without a dynasty are left out. Empty when ``dynasty_of`` is empty."""
    totals: dict[str, float] = {}
    for cls, p in probabilities.items():
        if cls in dynasty_of:
            totals[dynasty_of[cls]] = totals.get(dynasty_of[cls], 0.0) + p
    return sorted(totals.items(), key=lambda kv: -kv[1])


def spatial_maps(predictor: Predictor, result: Analysis) -> list[tuple[np.ndarray, MapInfo]]:
    """The model's declared spatial attention maps in ``result`` (display size, [0, 1]) with
    their declarations, in declaration order: what the researchers' section draws."""
    return [(result.attention[name], info) for name, info in map_infos(predictor.model).items()
            if info.kind == "spatial" and name in result.attention]


def _task_view(predictor: Predictor, result: Analysis, display: Image.Image, opacity: float) -> TaskView:
    p = result.prediction
    infos = map_infos(predictor.model)
    return TaskView(
        task=predictor.task,
        model_version=predictor.version,
        classes=list(predictor.classes),
        label=p.label,
        confidence=p.confidence,
        uncertain=p.uncertain,
        answer_set=p.answer_set,
        threshold=predictor.uncertainty_threshold,
        probabilities=dict(p.probabilities),
        dynasties=dynasty_probabilities(p.probabilities, predictor.dynasties),
        cam_method=result.cam_method,
        cam_target=result.cam_target,
        cam_overlay=overlay(display, result.cam, opacity, COLORMAP),
        attention_maps=spatial_maps(predictor, result),
        shown_on=display,
        opacity=opacity,
        gates=[(infos[k], v) for k, v in result.gates.items() if k in infos],
        channel_weights=[(infos[k], v) for k, v in result.channel_weights.items() if k in infos],
        cam_reading=heat_reading(result.cam),
    )


def analyse_loaded(
    hub: ModelHub,
    loaded: LoadedImage,
    domain: str = AUTO,
    cam_method: str = DEFAULT_CAM,
    target_by_task: dict[str, str] | None = None,
    opacity: float = 0.5,
    cache: AnalysisCache | None = None,
) -> ImageAnalysis:
    """Analyse a decoded upload with every task model of its domain (see :func:`analyse_image`)."""
    if cam_method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {cam_method!r}; choose from {', '.join(CAM_METHODS)}")
    targets = target_by_task or {}
    decision = decide_domain(hub, loaded.image, domain)
    views: list[TaskView] = []
    for task in TASKS_BY_DOMAIN[decision.domain]:
        predictor, status = hub.model(task)
        if predictor is None:
            views.append(TaskView(task=task, error=status.message or "no model loaded"))
            continue
        target = targets.get(task) if targets.get(task) in predictor.classes else None
        key = (loaded.sha256, task, status.serial, cam_method, target, loaded.display_size)

        def compute(predictor: Predictor = predictor, target: str | None = target) -> Analysis:
            return predictor.analyse(loaded.image, cam_method, target, map_size=loaded.display_size)

        result = cache.get_or_compute(key, compute) if cache is not None else compute()
        views.append(_task_view(predictor, result, loaded.display, opacity))
    width, height = loaded.image.size
    return ImageAnalysis(name=loaded.name, sha256=loaded.sha256, width=width, height=height,
                         display=loaded.display, domain=decision, tasks=views)


def analyse_image(
    hub: ModelHub,
    source: bytes | str | Path,
    domain: str = AUTO,
    cam_method: str = DEFAULT_CAM,
    target_by_task: dict[str, str] | None = None,
    opacity: float = 0.5,
    cache: AnalysisCache | None = None,
) -> ImageAnalysis:
    """Analyse one image given as bytes or a file path.

    ``domain`` — ``"auto"``, ``"painting"`` or ``"calligraphy"`` (see
    :func:`inkapp.curation.domain.decide_domain`); ``cam_method`` — a key of
    :data:`inkapp.explain.cam.CAM_METHODS`; ``target_by_task`` — the class each task's heat map should
    explain (default: its predicted class); ``opacity`` — overlay opacity in [0, 1].

    Raises :class:`inkapp.data.images.ImageError` (one-line message) for a bad upload.
    """
    if isinstance(source, (bytes, bytearray)):
        data, name = bytes(source), "upload"
    else:
        data, name = UploadItem(Path(source).name, Path(source)).read_bytes(), Path(source).name
    return analyse_loaded(hub, load_upload(data, name), domain, cam_method, target_by_task, opacity, cache)
