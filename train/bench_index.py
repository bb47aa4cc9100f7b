"""Vector-index benchmark at 100 000 synthetic vectors: build time, query latency
(p50/p95, one query at a time, k=10), resident memory added by the index, and
recall@10 against exact search, for every candidate library importable here
(faiss-cpu, hnswlib, usearch), and the project's persisted
:class:`inkapp.store.vectors.VectorIndex` (build = one add with its file writes, cold
reload, adding one image). The result decides the library behind
:mod:`inkapp.store.vectors` and is written to ``docs/results/bench-index.json``.

    OMP_NUM_THREADS=1 python train/bench_index.py [--n 100000] [--dim 1280 128] [--queries 500] [--threads 1]

The vectors have low intrinsic dimension, like image embeddings (a 32-d Gaussian
latent mapped linearly to ``dim`` plus 10 % noise; the same mapping for base and
queries), L2-normalised; similarity is the inner product (= cosine). Exact top-10 ground truth comes from a float32 matrix product.
Memory is the growth of the process's resident set (``/proc/self/statm``) while the
index is built, in MiB — a lower bound when the allocator reuses freed pages.

Growing to 10 million vectors (written into the JSON as ``scale_note``): at
10 M × 1280 float32 the raw vectors alone are 51 GB, so an exact flat index stops
being an option on one machine. The path is (1) shard by task — each task model has
its own embedding space, so an index per task is natural and keeps shards ≤ a few
million; (2) inside a shard, an IVF index with product quantisation
(faiss ``IVF65536,PQ64`` after an OPQ rotation: 64 bytes per vector ≈ 0.64 GB per
10 M, trained on a 1 M sample, ``nprobe`` 32-64 tuned to recall@10 ≥ 0.95) or, when
memory allows, HNSW over 8-bit scalar-quantised vectors (usearch ``i8``: 1.3 GB of
vectors + ~0.3 GB graph per 1 M at 1280-d); (3) beyond one machine, split each task's
index into N hash-of-sha256 shards queried in parallel, merging the top-k lists
(exact merge, since every shard returns its own top-k).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
K = 10
LATENT_DIM = 32

SCALE_NOTE = (
    "10 M vectors: shard by task (each task model has its own embedding space), then inside a shard use "
    "faiss IVF65536,PQ64 with an OPQ rotation (64 B/vector, 0.64 GB per 10 M, trained on a 1 M sample, nprobe 32-64 "
    "for recall@10 >= 0.95) or HNSW over int8 vectors (usearch i8, ~1.6 GB per 1 M at 1280-d) when memory allows; "
    "across machines, N hash-of-sha256 shards queried in parallel with an exact merge of their top-k lists."
)


def rss_mib() -> float:
    """Resident set size of this process in MiB (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def synthetic(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """n×dim float32 vectors of low intrinsic dimension (a 32-d Gaussian latent mapped
    linearly to ``dim``, plus 10 % isotropic noise), L2-normalised."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(12345).standard_normal((LATENT_DIM, dim), dtype=np.float32)
    x = rng.standard_normal((n, LATENT_DIM), dtype=np.float32) @ mixing
    x += 0.1 * np.sqrt(LATENT_DIM) * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def exact_top_k(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k ids by inner product: queries×k int64."""
    scores = queries @ base.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def _faiss_flat(dim: int, threads: int):
    import faiss
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    return (lambda x: index.add_with_ids(x, np.arange(len(x), dtype=np.int64)),
            lambda q: index.search(q[None], K)[1][0])


def _faiss_hnsw(dim: int, threads: int):
    import faiss
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 100
    index.hnsw.efSearch = 64
    return (lambda x: index.add(x), lambda q: index.search(q[None], K)[1][0])


def _hnswlib(dim: int, threads: int):
    import hnswlib
    index = hnswlib.Index(space="ip", dim=dim)

    def build(x: np.ndarray) -> None:
        index.init_index(max_elements=len(x), M=16, ef_construction=100)
        index.set_num_threads(threads)
        index.add_items(x, np.arange(len(x)))
        index.set_ef(64)

    return build, lambda q: index.knn_query(q[None], k=K)[0][0]


def _usearch_hnsw(dim: int, threads: int):
    from usearch.index import Index
    index = Index(ndim=dim, metric="ip", dtype="f32", connectivity=16, expansion_add=100, expansion_search=64)
    return (lambda x: index.add(np.arange(len(x)), x, threads=threads),
            lambda q: index.search(q, K).keys)


def _usearch_exact(dim: int, threads: int):
    from usearch.index import search
    store = {}

    def build(x: np.ndarray) -> None:
        store["x"] = x.copy()

    return build, lambda q: search(store["x"], q, K, metric="ip", exact=True).keys


def persisted_store(base: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    """The project's own path, :class:`inkapp.store.vectors.VectorIndex` in a temporary
    folder: one add of every vector (embedding + fsync'd index file + JSON sidecar),
    a cold reload, queries through :meth:`search`, and the cost of adding one more image
    (every commit rewrites the whole index)."""
    import hashlib
    import tempfile

    from inkapp.store.vectors import VectorIndex

    shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(len(base))]
    with tempfile.TemporaryDirectory() as folder:
        before = rss_mib()
        index = VectorIndex(folder, "bench")
        t = time.perf_counter()
        index.add(shas, base, [{"label": "x"}] * len(base), "bench")
        build_s = time.perf_counter() - t
        grown = rss_mib() - before
        disk_mib = sum(p.stat().st_size for p in Path(folder).iterdir()) / 2**20
        t = time.perf_counter()
        fresh = VectorIndex(folder, "bench")
        fresh.search(queries[:1], K)
        reload_s = time.perf_counter() - t
        lat, hits = [], 0
        for i, q in enumerate(queries):
            t = time.perf_counter()
            found = fresh.search(q, K)[0]
            lat.append((time.perf_counter() - t) * 1000)
            hits += len({h.sha256 for h in found} & {shas[j] for j in truth[i]})
        t = time.perf_counter()
        fresh.add([hashlib.sha256(b"one more").hexdigest()], queries[:1], [{"label": "y"}], "bench")
        add_one_s = time.perf_counter() - t
    return {"index": "inkapp VectorIndex (faiss exact, persisted)", "build_s": round(build_s, 2),
            "query_ms_p50": round(float(np.percentile(lat, 50)), 3), "query_ms_p95": round(float(np.percentile(lat, 95)), 3),
            "rss_growth_mib": round(grown, 1), "recall_at_10": round(hits / (K * len(queries)), 4),
            "disk_mib": round(disk_mib, 1), "cold_reload_s": round(reload_s, 2), "add_one_image_s": round(add_one_s, 2)}


CANDIDATES = {
    "faiss IndexIDMap2(IndexFlatIP) exact": ("faiss", _faiss_flat),
    "faiss IndexHNSWFlat M=32": ("faiss", _faiss_hnsw),
    "hnswlib HNSW M=16": ("hnswlib", _hnswlib),
    "usearch HNSW connectivity=16 f32": ("usearch", _usearch_hnsw),
    "usearch exact (brute force)": ("usearch", _usearch_exact),
}


def bench_one(name: str, factory, base: np.ndarray, queries: np.ndarray, truth: np.ndarray, threads: int) -> dict:
    """Build + query one candidate; returns its row of figures."""
    before = rss_mib()
    build, query = factory(base.shape[1], threads)
    t = time.perf_counter()
    build(base)
    build_s = time.perf_counter() - t
    grown = rss_mib() - before
    lat, hits = [], 0
    for i, q in enumerate(queries):
        t = time.perf_counter()
        ids = np.asarray(query(q)).ravel()
        lat.append((time.perf_counter() - t) * 1000)
        hits += len(set(ids.tolist()) & set(truth[i].tolist()))
    return {"index": name, "build_s": round(build_s, 2), "query_ms_p50": round(float(np.percentile(lat, 50)), 3),
            "query_ms_p95": round(float(np.percentile(lat, 95)), 3), "rss_growth_mib": round(grown, 1),
            "recall_at_10": round(hits / (K * len(queries)), 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, nargs="+", default=[1280, 128])
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="candidate names (substring match) to run")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "bench-index.json"))
    args = ap.parse_args()
    rows = []
    for dim in args.dim:
        base = synthetic(args.n, dim)
        queries = synthetic(args.queries, dim, seed=1)
        truth = exact_top_k(base, queries, K)
        for name, (module, factory) in CANDIDATES.items():
            if args.only and not any(s in name for s in args.only):
                continue
            try:
                importlib.import_module(module)
            except ImportError:
                print(f"skip {name}: {module} is not installed", file=sys.stderr)
                continue
            row = {"dim": dim, "n": args.n, **bench_one(name, factory, base, queries, truth, args.threads)}
            print(json.dumps(row), flush=True)
            rows.append(row)
        if not args.only or any(s in "inkapp VectorIndex" for s in args.only):
            row = {"dim": dim, "n": args.n, **persisted_store(base, queries, truth)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    doc = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, threads={args.threads}",
           "load_average_1_5_15_at_end": [round(v, 2) for v in os.getloadavg()],
           "python": platform.python_version(), "k": K, "queries": args.queries, "results": rows,
           "scale_note": SCALE_NOTE}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
