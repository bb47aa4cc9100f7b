"""Classify a whole collection into one CSV: ``inkapp scan DIR --task T --out results.csv``.

* Every image file under ``DIR`` (recursive; extensions in :data:`IMAGE_EXTENSIONS`,
  any case) is listed in sorted order by its path relative to ``DIR``.
* A torch :class:`~torch.utils.data.DataLoader` decodes and preprocesses exactly as
  ``inkapp predict`` does (:func:`inkapp.data.images.load_image`, then the card's
  letterbox :class:`~inkapp.data.preprocess.Preprocessor`); the main process runs the
  model, so predictions equal ``inkapp predict``'s (up to float rounding, < 1e-6: both
  use :meth:`inkapp.inference.Predictor.probabilities`).
* Batches are bounded by pixels, not by count: a batch holds at most
  ``batch_pixels`` model-input pixels (:func:`batch_for`; default
  :func:`default_batch_pixels`: on CPU 2**18, 4 canvases at 256 px, 1 at 512 px, 16 at
  128 px; on CUDA 2**24, 64 canvases at 512 px), so the forward pass's memory is the same
  at every input size.
* One worker call decodes a whole batch (the :class:`ScanDataset` item is a list of
  files -> one stacked uint8 tensor): one process hop per batch, not per image; each
  file is read once (hash and decode from the same bytes). On CUDA the batches come
  in pinned memory and are copied asynchronously (``non_blocking``), and the default
  worker count is every usable core (:func:`default_workers`).
* One row per image: ``path`` (relative to ``DIR``, ``/``-separated), ``sha256``,
  ``label``, ``confidence``, ``uncertain`` (``true``/``false``), ``answer_set`` (class
  keys joined by ``|``), one ``p_<class>`` column per class (card order), ``error`` — the
  probabilities, flag and set calibrated as the card says
  (:meth:`inkapp.inference.Predictor.prediction`), exactly as ``inkapp predict`` prints them.
  A file that cannot be read or decoded gets a row with empty prediction fields and the
  one-line error message; it never stops the scan.
* Resumable: rows already in the output are skipped; rows are appended, each written
  whole and flushed. A torn last line (the process was killed mid-write) is cut off
  before appending.
* Under ``torchrun --nproc_per_node=N -m inkapp scan ...`` the remaining files are
  sharded by rank (gloo on CPU, NCCL on GPU); each rank writes ``<out>.part<rank>`` and
  rank 0 merges the parts into the output after a barrier. Part files left behind by a
  killed run are merged (without duplicates) when the next run starts.
"""
from __future__ import annotations

import csv
import io
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler
from tqdm import tqdm

from inkapp.data.images import ImageError, effective_max_bytes, load_image, sha256_bytes, sha256_file
from inkapp.data.preprocess import Preprocessor
from inkapp.device import default_device, init_distributed, usable_cores
from inkapp.inference import Predictor
from inkapp.scan_pages import page_rows_for

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".gif", ".bmp"})
FIXED_COLUMNS = ("path", "sha256", "label", "confidence", "uncertain", "answer_set")
ERROR_COLUMN = "error"
PROBABILITY_PREFIX = "p_"
PART_SUFFIX = ".part"
#: Model-input pixels per batch on CPU by default (2**18 = 4 canvases of 256×256). A forward
#: pass of the shipped EfficientNet-Lite0 models (inference mode) adds ~270 bytes per input
#: pixel to the peak RSS (+566 MiB for 8 canvases of 512 px), on top of ~0.9 GiB for torch
#: and inkapp, so ~70 MiB per batch here. Smaller batches are also FASTER on a CPU (the
#: activations stay in cache): on the 2-core development machine, 2 torch threads, the
#: shipped models ran 44 / 47 / 32 images/s at 4 / 8 / 32 canvases of 256 px, 13.5 / 11.1 at
#: 1 / 4 of 512 px, 226 / 179 / 154 at 16 / 32 / 128 of 128 px; `inkapp scan` ran 20-50 %
#: more images/s at 2**18 than at the 2**21 used before (docs/PERFORMANCE.md).
CPU_BATCH_PIXELS = 1 << 18
#: On CUDA: 2**24 = 64 canvases of 512 px, 256 of 256 px (a GPU wants wide batches; issue 18
#: measures GPU throughput at batch 64). Not yet measured on a GPU by this project.
CUDA_BATCH_PIXELS = 1 << 24


@dataclass(frozen=True)
class ScanSummary:
    """Outcome of one :func:`scan` call on this process (rank).

    ``listed`` — image files found under the folder; ``skipped`` — already in the output
    before this run; ``scanned`` — rows written by this rank in this run (errors
    included); ``errors`` — of those, files that could not be classified; ``seconds`` —
    wall-clock time of the classification loop (workers' start-up included, model
    loading excluded).
    """

    listed: int
    skipped: int
    scanned: int
    errors: int
    seconds: float


def default_workers(device: torch.device | None = None) -> int:
    """Decoding worker processes by default. On CUDA every usable core (the model runs
    on the GPU, the main process mostly waits for it); on CPU one per core beyond the
    first, at most 4 (the main process needs the cores for the model)."""
    device = device if device is not None else default_device()
    if device.type == "cuda":
        return usable_cores()
    return max(1, min(4, usable_cores() - 1))


T = TypeVar("T")
_DONE = object()


def prefetched(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``items`` on a background thread, up to ``depth`` items ahead.

    With in-process decoding (``workers=0``) this overlaps decoding the next batch with
    the model's forward pass on the current one: Pillow's decoders and resampling,
    hashlib and torch all release the GIL while they work. An exception raised while
    producing an item is raised here, in the consumer; stopping early stops the thread.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((_DONE, None))
        except BaseException as err:  # handed to the consumer
            q.put((_DONE, err))

    thread = threading.Thread(target=produce, name="scan-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, err = q.get()
            if err is not None:
                raise err
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()


def default_batch_pixels(device: torch.device | None = None) -> int:
    """Model-input pixels per batch by default on ``device`` (None: :func:`default_device`):
    :data:`CUDA_BATCH_PIXELS` on CUDA, :data:`CPU_BATCH_PIXELS` elsewhere."""
    device = device if device is not None else default_device()
    return CUDA_BATCH_PIXELS if device.type == "cuda" else CPU_BATCH_PIXELS


def batch_for(image_size: int, batch_pixels: int | None = None, cap: int | None = None,
              device: torch.device | None = None) -> int:
    """Canvases per batch: as many ``image_size``×``image_size`` canvases as fit in
    ``batch_pixels`` pixels (None: :func:`default_batch_pixels` of ``device``; at least 1
    canvas), and at most ``cap`` when given."""
    batch_pixels = default_batch_pixels(device) if batch_pixels is None else batch_pixels
    if batch_pixels < 1:
        raise ValueError(f"batch pixels must be >= 1, got {batch_pixels}")
    if cap is not None and cap < 1:
        raise ValueError(f"batch size must be >= 1, got {cap}")
    n = max(1, batch_pixels // (image_size * image_size))
    return n if cap is None else min(n, cap)


def list_images(root: str | Path) -> list[str]:
    """Image files under ``root`` (recursive, hidden files included), as sorted
    ``/``-separated paths relative to ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    found = [p.relative_to(root).as_posix() for p in root.rglob("*")
             if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    return sorted(found)


def columns(classes: Sequence[str]) -> list[str]:
    """The output CSV's header for a model with ``classes``."""
    return [*FIXED_COLUMNS, *(PROBABILITY_PREFIX + c for c in classes), ERROR_COLUMN]


def _format_row(values: Iterable[str]) -> str:
    """One CSV record (RFC 4180 quoting, ``\\n`` terminated) as a string."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(list(values))
    return buf.getvalue()


def repair_csv(path: Path, header: list[str]) -> set[str]:
    """Make ``path`` a well-formed CSV with ``header`` and return the paths it lists.

    A missing or empty file gets the header. A torn tail — a last line without its
    newline, or a last record with the wrong number of fields — is truncated away.
    Raises ValueError if the file's header differs (another model's results).
    """
    if not path.exists() or path.stat().st_size == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_format_row(header), encoding="utf-8")
        return set()
    raw = path.read_bytes()
    keep = raw.rfind(b"\n") + 1  # a last line without its newline is torn
    records = list(csv.reader(io.StringIO(raw[:keep].decode("utf-8"), newline="")))
    if len(records) > 1 and len(records[-1]) != len(header):  # a torn record that happened to end a line
        keep = raw.rfind(b"\n", 0, keep - 1) + 1
        records.pop()
    if keep < len(raw):
        with open(path, "r+b") as fh:
            fh.truncate(keep)
    if not records:
        path.write_text(_format_row(header), encoding="utf-8")
        return set()
    if records[0] != header:
        raise ValueError(f"{path} holds results with other columns ({', '.join(records[0][:6])}, ...); "
                         f"expected {', '.join(header[:6])}, ... — choose another --out")
    return {r[0] for r in records[1:] if r}


def _merge_parts(out: Path, header: list[str], done: set[str]) -> set[str]:
    """Append the rows of every ``<out>.part*`` file not already in ``out`` (whose paths
    are ``done``), then delete the parts. Returns the updated set of done paths."""
    parts = sorted(out.parent.glob(out.name + PART_SUFFIX + "*"))
    if not parts:
        return done
    with open(out, "a", encoding="utf-8", newline="") as fh:
        for part in parts:
            repair_csv(part, header)
            with open(part, encoding="utf-8", newline="") as src:
                rows = csv.reader(src)
                next(rows, None)  # header
                for row in rows:
                    if row and row[0] not in done:
                        fh.write(_format_row(row))
                        done.add(row[0])
            fh.flush()
            os.fsync(fh.fileno())
            part.unlink()
    return done


class ScanDataset(Dataset):
    """A list of file indices -> one batch: (indices int64 N, uint8 N×3×S×S letterboxed
    canvases, sha256 per file, error message per file ("" when decoded)).

    Items are whole batches (the loader's sampler yields lists of indices), so a worker
    process decodes many images per call and hands back one tensor. Each file is read
    once: the digest and the decode use the same bytes. Decoding errors become an error
    message and a blank canvas; nothing raises.
    """

    def __init__(self, root: Path, paths: Sequence[str], preprocessor: Preprocessor) -> None:
        self.root = root
        self.paths = list(paths)
        self.preprocessor = preprocessor

    def __len__(self) -> int:
        return len(self.paths)

    def _one(self, index: int) -> tuple[torch.Tensor | None, str, str]:
        """(canvas or None, sha256, error) for file ``index``."""
        file = self.root / self.paths[index]
        try:
            if file.stat().st_size > effective_max_bytes():  # hashed by streaming; load_image says why it is refused
                digest, source = sha256_file(file), file
            else:
                source = file.read_bytes()
                digest = sha256_bytes(source)
        except OSError as err:
            return None, "", f"cannot read file: {err.strerror or err}"
        try:
            return self.preprocessor.canvas(load_image(source))[0], digest, ""
        except ImageError as err:
            return None, digest, str(err)
        except Exception as err:  # one unexpected decoder failure must not end a long scan
            return None, digest, " ".join(f"{type(err).__name__}: {err}".split())

    def __getitem__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
        size = self.preprocessor.size
        canvases = torch.zeros(len(indices), 3, size, size, dtype=torch.uint8)
        digests, errors = [], []
        for row, index in enumerate(indices):
            canvas, digest, error = self._one(index)
            if canvas is not None:
                canvases[row] = canvas
            digests.append(digest)
            errors.append(error)
        return torch.tensor(list(indices), dtype=torch.int64), canvases, digests, errors


def _rows(predictor: Predictor, paths: Sequence[str],
          batch: tuple[torch.Tensor, torch.Tensor, list[str], list[str]]) -> list[list[str]]:
    """One collated batch -> its CSV rows (forward pass only over the decodable files)."""
    indices, canvases, digests, errors = batch
    good = [i for i, e in enumerate(errors) if not e]
    probs = (predictor.probabilities(canvases[good], batch_size=len(good)) if good
             else torch.empty(0, len(predictor.classes)))
    by_position = dict(zip(good, probs.numpy()))
    empty = [""] * (len(predictor.classes) + len(FIXED_COLUMNS) - 2)
    rows = []
    for i, (index, digest, error) in enumerate(zip(indices.tolist(), digests, errors)):
        raw = by_position.get(i)
        if raw is None:
            fields = empty
        else:
            p = predictor.prediction(raw)  # calibrated probabilities, flag and answer set as the card says
            fields = [p.label, f"{p.confidence:.6f}", str(p.uncertain).lower(), "|".join(p.answer_set),
                      *(f"{p.probabilities[c]:.6f}" for c in predictor.classes)]
        rows.append([paths[index], digest, *fields, error])
    return rows


def scan(
    root: str | Path,
    out: str | Path,
    predictor: Predictor,
    batch_size: int | None = None,
    workers: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] | None = None,
    progress: bool = True,
    batch_pixels: int | None = None,
) -> ScanSummary:
    """Classify every image under ``root`` not yet in ``out`` and append one row per image.

    ``batch_pixels`` — model-input pixels per batch (None: :func:`default_batch_pixels`); ``batch_size`` — an optional upper
    bound on images per batch (:func:`batch_for`). ``workers`` — decoding processes
    (0 = decode in this process, on a thread that runs one batch ahead of the model,
    :func:`prefetched`; None = :func:`default_workers`). ``rank``/``world_size``/``barrier`` — this process's share
    of a distributed scan (``barrier`` is required when ``world_size`` > 1); rank 0 owns
    ``out``, every rank writes ``<out>.part<rank>`` and rank 0 merges them at the end.
    ``progress`` — show a tqdm bar on stderr (rank 0 only).
    """
    batch = batch_for(predictor.preprocessor.size, batch_pixels, batch_size, predictor.device)
    if world_size > 1 and barrier is None:
        raise ValueError("a distributed scan needs a barrier")
    root, out = Path(root), Path(out)
    header = columns(predictor.classes)
    paths = list_images(root)
    if rank == 0:
        _merge_parts(out, header, repair_csv(out, header))
    if barrier is not None:
        barrier()
    done = repair_csv(out, header) if rank == 0 else _read_done(out)
    remaining = [p for p in paths if p not in done]
    todo = remaining[rank::world_size]
    target = out if world_size == 1 else out.with_name(f"{out.name}{PART_SUFFIX}{rank}")
    if target != out:
        target.write_text(_format_row(header), encoding="utf-8")
    workers = default_workers(predictor.device) if workers is None else workers
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    batches = BatchSampler(SequentialSampler(range(len(todo))), batch, drop_last=False)
    loader = DataLoader(ScanDataset(root, todo, predictor.preprocessor), sampler=batches, batch_size=None,
                        num_workers=workers, pin_memory=predictor.device.type == "cuda")
    pages = page_rows_for(predictor)  # calligrapher: a page image gets the page attribution (inkapp.scan_pages)
    scanned = errors = 0
    start = time.perf_counter()
    with open(target, "a", encoding="utf-8", newline="") as fh, \
            tqdm(total=len(todo), desc=f"scan {predictor.task}", unit="img", file=sys.stderr,
                 disable=not progress or rank != 0) as bar:
        for item in (loader if workers else prefetched(loader)):
            rows = _rows(predictor, todo, item)
            if pages is not None:
                rows = pages.rewrite(root, rows)
            fh.write("".join(_format_row(row) for row in rows))  # whole rows, flushed once per batch
            fh.flush()
            errors += sum(bool(row[-1]) for row in rows)
            scanned += len(rows)
            bar.update(len(rows))
    seconds = time.perf_counter() - start
    if barrier is not None:
        barrier()
        if rank == 0:
            _merge_parts(out, header, repair_csv(out, header))
        barrier()
    return ScanSummary(len(paths), len(paths) - len(remaining), scanned, errors, seconds)


def _read_done(out: Path) -> set[str]:
    """Paths listed in ``out`` (already repaired by rank 0), without modifying it."""
    with open(out, encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh)
        next(rows, None)
        return {r[0] for r in rows if r}


def run_scan(root: str | Path, out: str | Path, model_folder: str | Path, batch_size: int | None = None,
             workers: int | None = None, batch_pixels: int | None = None) -> ScanSummary:
    """Load the model at ``model_folder`` and :func:`scan`, joining a torchrun process
    group when launched by torchrun (gloo on CPU, NCCL on GPU; one GPU per local rank)."""
    info = init_distributed()
    if info.world == 1:
        return scan(root, out, Predictor.from_folder(model_folder), batch_size, workers, batch_pixels=batch_pixels)
    try:
        predictor = Predictor.from_folder(model_folder, default_device())
        return scan(root, out, predictor, batch_size, workers, info.rank, info.world, dist.barrier,
                    batch_pixels=batch_pixels)
    finally:
        dist.destroy_process_group()
