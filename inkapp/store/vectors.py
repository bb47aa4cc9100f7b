"""A persisted vector index keyed by image sha256 (faiss, exact inner product).

Layout under ``folder`` for an index called ``name``::

    <name>.json            the sidecar: embedding space, dimension, generation, the
                           index file it belongs to, and id -> {sha256, metadata}
    <name>.<gen>.faiss     the faiss index of that generation (serialised IndexIDMap2)
    <name>.lock            inter-process lock held by every writer

The vectors are float32 unit vectors; similarity is their inner product (cosine).
The index is faiss ``IndexIDMap2(IndexFlatIP)`` — exact search, chosen by
``train/bench_index.py`` (``docs/results/bench-index.json``): at 100 000 vectors it
builds in under a second with recall 1.0 and answers a query in tens of ms on one core,
which suits a collection of that size; the approximate indexes only pay off far beyond
it (see the script's note on 10 million).

Writers (:meth:`VectorIndex.add`, :meth:`remove`, :meth:`clear`) hold the lock, read
the current generation from disk, write the new index to a temporary file, ``fsync``
and ``os.replace`` it to a fresh ``<name>.<gen>.faiss``, then replace the sidecar the
same way — the sidecar's replacement is the commit. A writer killed at any point leaves
the previous generation intact (an orphaned index file is deleted by the next writer).
Readers take no lock: they read the sidecar, then the index file it names, retrying
if a concurrent writer has just deleted that file; the snapshot is cached until the
sidecar file changes (inode, mtime, size — every commit is a new inode). Every write rewrites the whole index: O(items × dim).
"""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import faiss
import numpy as np
from filelock import FileLock

from .files import atomic_write_bytes, fsync_dir

FORMAT = 1
LOCK_TIMEOUT_S = 120.0
_READ_RETRIES = 20


class VectorIndexError(ValueError):
    """Bad input to, or an unusable state of, a vector index; ``str()`` is one line."""


@dataclass(frozen=True)
class Hit:
    """One search result: the stored image's ``sha256``, its ``similarity`` to the query
    (inner product of unit vectors, in [-1, 1]) and the metadata stored with it."""

    sha256: str
    similarity: float
    meta: dict[str, str]


@dataclass(frozen=True)
class _Snapshot:
    stamp: tuple[int, int, int]  # the sidecar's (inode, mtime_ns, size) when read; (0, 0, 0) if unknown
    generation: str
    space: str
    dim: int
    index: faiss.IndexIDMap2
    items: dict[int, dict[str, str]]  # faiss id -> {"sha256": ..., metadata}
    next_id: int

    @property
    def ids_by_sha(self) -> dict[str, int]:
        return {meta["sha256"]: i for i, meta in self.items.items()}


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` at once, then fsync the folder so the rename survives."""
    atomic_write_bytes(path, data)
    fsync_dir(path.parent)


def _check_sha(value: str) -> str:
    if not (isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
        raise VectorIndexError(f"not a sha256 hex digest: {value!r}")
    return value


class VectorIndex:
    """An exact cosine index of image embeddings persisted in ``folder`` as ``name``.

    Safe across threads and processes; see the module docstring for the protocol.
    """

    def __init__(self, folder: str | Path, name: str) -> None:
        if not name or any(c in name for c in "/\\.") or name.startswith("-"):
            raise VectorIndexError(f"bad index name {name!r}: use letters, digits, '-' and '_'")
        self.folder = Path(folder)
        self.name = name
        self.sidecar = self.folder / f"{name}.json"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.folder / f"{name}.lock"), timeout=LOCK_TIMEOUT_S)
        self._cache: _Snapshot | None = None
        self._cache_lock = threading.Lock()

    # ---------------------------------------------------------------- reading

    def _read_disk(self) -> _Snapshot | None:
        """The committed generation, or None when the index has never been written."""
        for _ in range(_READ_RETRIES):
            try:
                st = os.stat(self.sidecar)
                cached = self._cache
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
                if cached is not None and cached.stamp == stamp:  # replaced files get a new inode
                    return cached
                doc = json.loads(self.sidecar.read_bytes())
            except FileNotFoundError:
                return None
            if cached is not None and cached.generation == doc["generation"]:
                return replace(cached, stamp=stamp)
            try:
                raw = (self.folder / doc["index_file"]).read_bytes()
            except FileNotFoundError:  # a writer committed a newer generation and deleted this file
                time.sleep(0.01)
                continue
            index = faiss.deserialize_index(np.frombuffer(raw, dtype=np.uint8))
            items = {int(k): v for k, v in doc["items"].items()}
            if index.ntotal != len(items):
                raise VectorIndexError(
                    f"vector index {self.sidecar} is inconsistent: {index.ntotal} vectors, {len(items)} items")
            return _Snapshot(stamp, doc["generation"], doc["space"], int(doc["dim"]), index, items, int(doc["next_id"]))
        raise VectorIndexError(f"vector index {self.sidecar}: its index file keeps disappearing (too many writers?)")

    def _snapshot(self) -> _Snapshot | None:
        with self._cache_lock:
            self._cache = self._read_disk()
            return self._cache

    def __len__(self) -> int:
        snap = self._snapshot()
        return 0 if snap is None else len(snap.items)

    @property
    def space(self) -> str | None:
        """The embedding space the stored vectors belong to (e.g. ``task:<model version>``)."""
        snap = self._snapshot()
        return None if snap is None else snap.space

    def items(self) -> dict[str, dict[str, str]]:
        """sha256 -> metadata of every stored image."""
        snap = self._snapshot()
        return {} if snap is None else {m["sha256"]: dict(m) for m in snap.items.values()}

    def vectors(self, sha256s: Sequence[str]) -> np.ndarray:
        """Stored vectors of ``sha256s`` (N×D float32); KeyError names a missing one."""
        snap = self._snapshot()
        ids = {} if snap is None else snap.ids_by_sha
        missing = [s for s in sha256s if s not in ids]
        if missing:
            raise KeyError(f"not in index {self.name!r}: {missing[0]}")
        if not sha256s:
            return np.zeros((0, 0 if snap is None else snap.dim), np.float32)
        return np.stack([snap.index.reconstruct(ids[s]) for s in sha256s])

    def search(self, queries: np.ndarray, k: int, exclude: Sequence[str] = ()) -> list[list[Hit]]:
        """The ``k`` most similar stored images to each query row (Q×D, L2-normalised
        here), best first, leaving out the sha256s in ``exclude`` (e.g. the query image itself)."""
        if k < 1:
            raise VectorIndexError(f"k must be >= 1, got {k}")
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        snap = self._snapshot()
        if snap is None or not snap.items:
            return [[] for _ in q]
        if q.shape[1] != snap.dim:
            raise VectorIndexError(f"query has dimension {q.shape[1]}, index {self.name!r} holds {snap.dim}")
        norms = np.linalg.norm(q, axis=1, keepdims=True)
        if not np.isfinite(q).all() or (norms == 0).any():
            raise VectorIndexError("a query vector is all zeros or not finite")
        q = q / norms
        skip = set(exclude)
        scores, ids = snap.index.search(q, min(k + len(skip), len(snap.items)))
        out = []
        for row_s, row_i in zip(scores, ids):
            hits = [Hit(snap.items[int(i)]["sha256"], float(s), dict(snap.items[int(i)]))
                    for s, i in zip(row_s, row_i) if i >= 0 and snap.items[int(i)]["sha256"] not in skip]
            out.append(hits[:k])
        return out

    def pairs_above(self, threshold: float, among: Sequence[str] | None = None) -> list[tuple[str, str, float]]:
        """Pairs of stored images with similarity >= ``threshold``, at least one of them in
        ``among`` (default: every stored image); each unordered pair once, as
        (sha_a, sha_b, similarity) sorted by decreasing similarity."""
        snap = self._snapshot()
        if snap is None or not snap.items:
            return []
        ids_by_sha = snap.ids_by_sha
        query_shas = sorted(ids_by_sha) if among is None else sorted({s for s in among if s in ids_by_sha})
        if not query_shas:
            return []
        q = np.stack([snap.index.reconstruct(ids_by_sha[s]) for s in query_shas])
        lims, scores, ids = snap.index.range_search(q, float(threshold))
        pairs: dict[tuple[str, str], float] = {}
        for row, sha in enumerate(query_shas):
            for s, i in zip(scores[lims[row]:lims[row + 1]], ids[lims[row]:lims[row + 1]]):
                other = snap.items[int(i)]["sha256"]
                if other != sha:
                    pairs[tuple(sorted((sha, other)))] = float(s)
        return sorted(((a, b, s) for (a, b), s in pairs.items()), key=lambda p: (-p[2], p[0], p[1]))

    # ---------------------------------------------------------------- writing

    def add(self, sha256s: Sequence[str], vectors: np.ndarray, metas: Sequence[Mapping[str, str]], space: str,
            merge_meta: bool = False, reset_other_space: bool = False) -> int:
        """Store (or replace) the vectors of ``sha256s`` with their metadata; returns how
        many images were new. ``vectors`` is N×D (rows are L2-normalised here);
        ``space`` names the embedding space and must match the stored one, unless
        ``reset_other_space``: then an index of another space is emptied first (e.g. for
        a new model version). With ``merge_meta`` an already stored image keeps its
        metadata keys that the new row does not set. Both happen under the lock."""
        if not space:
            raise VectorIndexError("the embedding space must be named")
        x = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        if not (len(sha256s) == len(x) == len(metas)):
            raise VectorIndexError(f"{len(sha256s)} sha256s, {len(x)} vectors and {len(metas)} metadata rows differ")
        if len(x) == 0:
            return 0
        if not np.isfinite(x).all():
            raise VectorIndexError("vectors contain NaN or infinity")
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if (norms == 0).any():
            raise VectorIndexError("a vector is all zeros")
        x = x / norms
        rows = {}
        for sha, meta in zip(sha256s, metas):
            rows[_check_sha(sha)] = {**{str(k): str(v) for k, v in meta.items()}, "sha256": sha}
        with self._lock:
            snap = self._read_disk()
            if snap is None or (reset_other_space and snap.space != space):
                snap = _Snapshot((0, 0, 0), "", space, x.shape[1], faiss.IndexIDMap2(faiss.IndexFlatIP(x.shape[1])),
                                 {}, 0)
            if snap.space != space:
                raise VectorIndexError(
                    f"index {self.name!r} holds embeddings of {snap.space!r}, not {space!r}; clear() it to start over")
            if x.shape[1] != snap.dim:
                raise VectorIndexError(f"vectors have dimension {x.shape[1]}, index {self.name!r} holds {snap.dim}")
            index = faiss.clone_index(snap.index)
            items = dict(snap.items)
            old = snap.ids_by_sha
            replaced = sorted({old[s] for s in sha256s if s in old})
            if replaced:
                index.remove_ids(np.asarray(replaced, dtype=np.int64))
                for i in replaced:
                    del items[i]
            last = {sha: j for j, sha in enumerate(sha256s)}  # a sha given twice: the last row wins
            order = sorted(last.values())
            new_ids = np.arange(snap.next_id, snap.next_id + len(order), dtype=np.int64)
            index.add_with_ids(x[order], new_ids)
            for i, j in zip(new_ids, order):
                sha = sha256s[j]
                items[int(i)] = {**snap.items[old[sha]], **rows[sha]} if merge_meta and sha in old else rows[sha]
            self._commit(space, snap.dim, index, items, snap.next_id + len(order))
        return len(last) - len(replaced)

    def remove(self, sha256s: Sequence[str]) -> int:
        """Delete the given images; returns how many were stored."""
        with self._lock:
            snap = self._read_disk()
            if snap is None:
                return 0
            old = snap.ids_by_sha
            gone = sorted({old[s] for s in sha256s if s in old})
            if not gone:
                return 0
            index = faiss.clone_index(snap.index)
            index.remove_ids(np.asarray(gone, dtype=np.int64))
            items = {i: m for i, m in snap.items.items() if i not in set(gone)}
            self._commit(snap.space, snap.dim, index, items, snap.next_id)
        return len(gone)

    def clear(self) -> None:
        """Delete the index (all generations) so it can be rebuilt, e.g. for a new model."""
        with self._lock:
            self.sidecar.unlink(missing_ok=True)
            self._delete_orphans(keep=None)
        with self._cache_lock:
            self._cache = None

    def _commit(self, space: str, dim: int, index: faiss.IndexIDMap2, items: dict[int, dict[str, str]],
                next_id: int) -> None:
        """Write a new generation (index file, then sidecar = commit); caller holds the lock."""
        generation = uuid.uuid4().hex
        index_file = f"{self.name}.{generation}.faiss"
        _atomic_write(self.folder / index_file, faiss.serialize_index(index).tobytes())
        doc = {"format": FORMAT, "name": self.name, "space": space, "dim": dim, "generation": generation,
               "index_file": index_file, "next_id": next_id, "count": len(items),
               "items": {str(i): m for i, m in items.items()}}
        _atomic_write(self.sidecar, json.dumps(doc, ensure_ascii=False).encode("utf-8"))
        self._delete_orphans(keep=index_file)
        with self._cache_lock:
            self._cache = _Snapshot((0, 0, 0), generation, space, dim, index, items, next_id)

    def _delete_orphans(self, keep: str | None) -> None:
        """Remove index files and temporaries of this index other than ``keep`` (lock held)."""
        for path in self.folder.glob(f"{self.name}.*.faiss"):
            if path.name != keep:
                path.unlink(missing_ok=True)
        for path in self.folder.glob(f".{self.name}.*.tmp"):
            path.unlink(missing_ok=True)
