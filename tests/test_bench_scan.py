"""``inkapp bench`` and ``inkapp scan`` with tiny random-weight models (128 px).

No timing assertions: the bench test checks the document's shape only.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inkapp.dev.bench import GLOBAL_FIGURES, MODEL_FIGURES, TARGETS
from inkapp.explain.overlay import colorize, overlay
from inkapp.cli import main
from inkapp.data.preprocess import Preprocessor
from inkapp.models import build_model, load_model, save_model
from inkapp.inference import Predictor
from inkapp.models.ensemble import save_ensemble
from inkapp.scan import ScanDataset, batch_for, columns, prefetched, repair_csv, scan

CLASSES = ["figure", "flower_bird", "landscape"]
TASK = "painting-subject"
SIZE = 128
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def make_model(folder: Path, arch: str = "inkfusion") -> Path:
    """A random-weight model folder for :data:`TASK`."""
    torch.manual_seed(0)
    model = build_model({"arch": arch, "num_classes": len(CLASSES), "pretrained": None, "image_size": SIZE})
    card = {"task": TASK, "domain": "painting", "classes": CLASSES,
            "preprocessing": Preprocessor(SIZE, False, (0.5,) * 3, (0.5,) * 3).to_card(), "version": "test"}
    return save_model(model, folder, card)


def make_collection(folder: Path, count: int) -> list[str]:
    """``count`` small images (JPEG and PNG, RGB and L, various shapes) in two levels of
    folders; their relative paths."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        rel = f"{'album/' if i % 2 else ''}img{i:03d}.{'png' if i % 3 == 0 else 'jpg'}"
        shape = (40 + 7 * (i % 5), 30 + 11 * (i % 4)) + (() if i % 4 == 0 else (3,))
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(target)
        paths.append(rel)
    return paths


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    assert header == columns(CLASSES)
    assert all(len(r) == len(header) for r in rows[1:]), "every record has every field"
    return [dict(zip(header, r)) for r in rows[1:]]


def scan_cmd(folder: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return ["-m", "inkapp", "scan", str(folder), "--task", TASK, "--weights", str(model), "--out", str(out), *extra]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("weights") / TASK)


@pytest.mark.slow
def test_bench_quick_json_has_every_figure(tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    make_model(weights / TASK)
    members = [load_model(make_model(tmp_path / f"member{i}")) for i in range(2)]
    save_ensemble([m for m, _ in members], [c for _, c in members], weights / TASK / "ensemble",
                  {**members[0][1], "version": "test-ensemble"}, cam_member=0)
    out = tmp_path / "bench.json"
    cmd = ["-m", "inkapp", "bench", "--quick", "--json", "--threads", "1", "--out", str(out)]
    proc = subprocess.run([sys.executable, *cmd],
                          env={**ENV, "INKAPP_WEIGHTS_DIR": str(weights)}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert json.loads(proc.stdout) == doc
    assert list(doc["models"]) == [TASK]
    figures = doc["models"][TASK]
    for key in MODEL_FIGURES:
        assert key in figures, key
    ratios, last_batch = figures["ratios"], str(doc["settings"]["batch_sizes"][-1])
    assert ratios["forward_over_baseline"] == pytest.approx(figures["forward_ms"] / figures["baseline_forward_ms"])
    assert ratios["analysis_over_baseline"] == pytest.approx(figures["analysis_ms"] / figures["baseline_forward_ms"])
    assert ratios["scan_over_baseline_throughput"] == pytest.approx(
        figures["scan_throughput_ips"] / figures["baseline_throughput_ips"][last_batch])
    assert set(figures["throughput_ips"]) == {str(b) for b in doc["settings"]["batch_sizes"]}
    assert figures["analysis_ms"] > figures["forward_ms"]  # an analysis is a forward plus a backward pass and more
    breakdown = figures["analysis_breakdown_ms"]
    assert set(breakdown) == {"decode", "display", "analyse", "overlay"}
    assert sum(breakdown.values()) <= figures["analysis_ms"] * 1.0001 + 1e-6  # median of sums vs medians of parts
    assert set(figures["options"]) == {"jpeg_draft", "full_size_maps"}
    strict = figures["ratios_channels_last_baseline"]
    assert strict["forward_over_baseline"] == pytest.approx(figures["forward_ms"] / figures["baseline_cl_forward_ms"])
    # batches bounded by pixels: quick settings ask for 2 and 4 canvases, which fit the default budget at 128 px
    assert figures["batch_sizes"] == [2, 4] and figures["scan_batch"] == 4
    n, kind, px = doc["settings"]["scan_inputs"][TASK]
    assert (n, kind) == (doc["settings"]["scan_images"], "scroll") and px[0] > 0
    for key in GLOBAL_FIGURES:
        assert key in doc, key
    assert doc["cold_start_s"] is None and "cold_start_s" in doc["reasons"]  # skipped by --quick
    assert doc["peak_rss_mb"] > 0 and doc["scan_worker_peak_rss_mb"] > 0  # the scan ran decoding workers
    assert "missing_models" in doc["reasons"]  # only one of the four tasks has weights
    checked = {c["figure"]: c for c in doc["checks"]}
    assert ({f"{TASK}.{k}" for k in TARGETS if k in figures["ratios"]}
            | {"cold_start_s", "peak_rss_mb", "scan_worker_peak_rss_mb"}) == set(checked)
    ensemble = doc["ensembles"][TASK]  # the shipped ensemble: the same figures, reported without targets
    assert ensemble["members"] == 2 and ensemble["tta_hflip"] is False
    assert all(key in ensemble for key in MODEL_FIGURES)
    assert ensemble["forward_ms"] > 0 and ensemble["scan_throughput_ips"] > 0
    for name, (comparison, limit) in TARGETS.items():  # each check compares its figure with its target
        check = checked[f"{TASK}.{name}" if name in ratios else name]
        value = ratios[name] if name in ratios else doc[name]
        assert check["value"] == value and check["target"] == f"{comparison} {limit:g}"
        expected = None if value is None else (value <= limit if comparison == "<=" else value >= limit)
        assert check["pass"] is expected, check


def test_scan_equals_predict_and_reports_bad_files(tmp_path: Path, model: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "collection"
    good = make_collection(folder, 6)
    (folder / "broken.jpg").write_bytes(b"this is not an image")
    jpeg = (folder / good[1]).read_bytes()
    (folder / "album" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "notes.txt").write_text("not listed")
    out = tmp_path / "results.csv"
    summary = scan(folder, out, Predictor.from_folder(model), batch_size=4, workers=0, progress=False)
    assert (summary.listed, summary.scanned, summary.errors, summary.skipped) == (8, 8, 2, 0)
    rows = {r["path"]: r for r in read_rows(out)}
    assert set(rows) == {*good, "broken.jpg", "album/truncated.jpg"}
    assert "not a recognised image" in rows["broken.jpg"]["error"]
    assert "truncated" in rows["album/truncated.jpg"]["error"]
    for bad in ("broken.jpg", "album/truncated.jpg"):
        assert rows[bad]["label"] == "" and len(rows[bad]["sha256"]) == 64

    assert main(["predict", "--task", TASK, "--weights", str(model), *(str(folder / p) for p in good)]) == 0
    predicted = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(predicted) == len(good)
    for rel, p in zip(good, predicted):
        row = rows[rel]
        assert row["error"] == "" and row["label"] == p["label"]
        assert abs(float(row["confidence"]) - p["confidence"]) <= 1e-5
        for c in CLASSES:
            assert abs(float(row[f"p_{c}"]) - p["probabilities"][c]) <= 1e-5


def test_scan_ensemble_flag_uses_the_shipped_ensemble_or_says_there_is_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "weights"
    make_model(weights / TASK)
    monkeypatch.setenv("INKAPP_WEIGHTS_DIR", str(weights))
    folder = tmp_path / "collection"
    make_collection(folder, 3)
    out = tmp_path / "results.csv"
    assert main(["scan", str(folder), "--task", TASK, "--out", str(out), "--ensemble", "--workers", "0"]) == 2
    assert "no ensemble is shipped for painting-subject" in capsys.readouterr().err and not out.exists()
    torch.manual_seed(1)
    other = build_model({"arch": "inkfusion", "num_classes": len(CLASSES), "pretrained": None, "image_size": SIZE})
    single, card = load_model(weights / TASK)
    save_ensemble([single, other], [card, card], weights / TASK / "ensemble",
                  {**card, "version": "test-ensemble"}, cam_member=0)
    assert main(["scan", str(folder), "--task", TASK, "--out", str(out), "--ensemble", "--workers", "0"]) == 0
    ensemble, alone = Predictor.from_folder(weights / TASK / "ensemble", "cpu"), Predictor.from_folder(weights / TASK, "cpu")
    for row in read_rows(out):
        expected = ensemble.predict([Image.open(folder / row["path"])])[0].probabilities
        assert max(abs(float(row[f"p_{c}"]) - p) for c, p in expected.items()) < 1e-5
        assert max(abs(float(row[f"p_{c}"]) - p) for c, p in
                   alone.predict([Image.open(folder / row["path"])])[0].probabilities.items()) > 1e-4
    assert main(["scan", str(folder), "--task", TASK, "--out", str(out), "--ensemble",
                 "--weights", str(weights / TASK)]) == 2  # one source of weights only


def test_repair_csv_cuts_a_torn_tail(tmp_path: Path) -> None:
    header = columns(CLASSES)
    out = tmp_path / "r.csv"
    assert repair_csv(out, header) == set()
    whole = "a.jpg,ff,figure,0.5,false,figure,0.5,0.25,0.25,\n"
    out.write_text(out.read_text() + whole + "b.jpg,ff,fig")
    assert repair_csv(out, header) == {"a.jpg"}
    assert out.read_text().endswith(whole)
    out.write_text(out.read_text() + "c.jpg,ff\n")  # a torn record that happens to end a line
    assert repair_csv(out, header) == {"a.jpg"}
    assert out.read_text().endswith(whole)
    other = tmp_path / "other.csv"
    other.write_text("path,label\n")
    with pytest.raises(ValueError, match="other columns"):
        repair_csv(other, header)


#: Runs ``inkapp scan`` (argv[2:]) and SIGKILLs its process group, decoding worker included,
#: when the model is about to score batch number argv[1] (0-based): a kill at a known point.
_KILLED_SCAN = """
import os, signal, sys
from inkapp.cli import main
from inkapp.inference import Predictor
from inkapp.models.ensemble import save_ensemble
real, scored = Predictor.probabilities, [0]
def probabilities(self, *args, **kwargs):
    if scored[0] == int(sys.argv[1]):
        os.killpg(0, signal.SIGKILL)
    scored[0] += 1
    return real(self, *args, **kwargs)
Predictor.probabilities = probabilities
sys.exit(main(sys.argv[2:]))
"""
KILL_AT_BATCH = 5


@pytest.mark.slow
def test_scan_resumes_after_being_killed(tmp_path: Path, model: Path) -> None:
    folder = tmp_path / "collection"
    paths = make_collection(folder, 12)
    out = tmp_path / "results.csv"
    killed = subprocess.run([sys.executable, "-c", _KILLED_SCAN, str(KILL_AT_BATCH),
                             *scan_cmd(folder, model, out, "--batch-size", "1", "--workers", "1")[2:]],
                            env=ENV, capture_output=True, start_new_session=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    partial = read_rows(out)
    assert [r["path"] for r in partial] == sorted(paths)[:KILL_AT_BATCH]  # a row per scored batch of one, in order
    with open(out, "a", encoding="utf-8") as fh:  # what a kill in the middle of a write leaves
        fh.write(f"{paths[-1]},0123abc,lands")

    rerun = subprocess.run([sys.executable, *scan_cmd(folder, model, out, "--workers", "0")], env=ENV,
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(partial)} already in" in rerun.stderr
    rows = read_rows(out)
    assert sorted(r["path"] for r in rows) == sorted(paths)  # each image exactly once
    assert all(r["error"] == "" and r["label"] in CLASSES for r in rows)


@pytest.mark.slow
def test_torchrun_two_processes_cover_every_file_once(tmp_path: Path, model: Path) -> None:
    folder = tmp_path / "collection"
    paths = make_collection(folder, 11)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "results.csv"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           *scan_cmd(folder, model, out, "--workers", "0", "--batch-size", "4")],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(out)
    assert sorted(r["path"] for r in rows) == sorted([*paths, "broken.png"])
    assert [r["path"] for r in rows if r["error"]] == ["broken.png"]
    assert not list(tmp_path.glob("results.csv.part*")), "part files are merged and removed"


def test_batches_are_bounded_by_pixels() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [batch_for(s, device=cpu) for s in (128, 256, 512)] == [16, 4, 1]  # 2**18 pixels on CPU by default
    assert [batch_for(s, device=cuda) for s in (128, 256, 512)] == [1024, 256, 64]  # 2**24 on CUDA
    assert batch_for(512, 512 * 512 * 3 + 5) == 3
    assert batch_for(4096, device=cpu) == 1  # never empty
    assert batch_for(128, cap=8, device=cpu) == 8 and batch_for(256, cap=8, device=cpu) == 4
    with pytest.raises(ValueError, match="batch pixels must be >= 1"):
        batch_for(128, 0)
    with pytest.raises(ValueError, match="batch size must be >= 1"):
        batch_for(128, cap=0)


def test_scan_batches_follow_the_pixel_budget(tmp_path: Path, model: Path) -> None:
    folder = tmp_path / "collection"
    make_collection(folder, 7)
    predictor = Predictor.from_folder(model)
    seen: list[int] = []
    real = predictor.probabilities

    def counting(canvases: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        seen.append(len(canvases))
        return real(canvases, batch_size)

    predictor.probabilities = counting  # type: ignore[method-assign]
    budget = 3 * SIZE * SIZE + SIZE  # three 128 px canvases and a bit
    summary = scan(folder, tmp_path / "r.csv", predictor, workers=0, progress=False, batch_pixels=budget)
    assert summary.scanned == 7 and seen == [3, 3, 1]


def test_one_dataset_item_is_a_whole_batch(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    paths = make_collection(folder, 5)
    (folder / "bad.png").write_bytes(b"nope")
    pre = Preprocessor(SIZE, False, (0.5,) * 3, (0.5,) * 3)
    ds = ScanDataset(folder, [*paths, "bad.png"], pre)
    indices, canvases, digests, errors = ds[[4, 5, 0]]
    assert indices.tolist() == [4, 5, 0]
    assert canvases.shape == (3, 3, SIZE, SIZE) and canvases.dtype == torch.uint8
    assert torch.equal(canvases[0], pre.canvas(Image.open(folder / paths[4]))[0])  # decoded as predict decodes
    assert not canvases[1].any() and "not a recognised image" in errors[1]  # a blank canvas and the reason
    assert errors[0] == errors[2] == ""
    assert digests[2] == hashlib.sha256((folder / paths[0]).read_bytes()).hexdigest()


def test_prefetched_keeps_order_and_raises_in_the_consumer() -> None:
    assert list(prefetched(iter(range(50)), depth=2)) == list(range(50))

    def broken():
        yield 1
        raise OSError("disk went away")

    got = []
    with pytest.raises(OSError, match="disk went away"):
        for item in prefetched(broken()):
            got.append(item)
    assert got == [1]


def test_overlay_is_within_one_level_of_the_plain_formula() -> None:
    """The one-pass OpenCV blend (issue 18) stays within one level of
    ``rint(base + a·heat·(colour − base))`` and is exact where the heat is 0, or 1 at opacity 1."""
    rng = np.random.default_rng(3)
    heat = rng.random((90, 40), dtype=np.float32) * 1.2 - 0.1  # out-of-range values are clipped
    heat[:10] = 0.0
    heat[-10:] = 1.0
    kept = heat.copy()
    for image in (Image.fromarray(rng.integers(0, 256, (90, 40, 3), dtype=np.uint8)),
                  Image.fromarray(rng.integers(0, 256, (90, 40), dtype=np.uint8))):
        for opacity in (0.0, 0.35, 1.0):
            clipped = np.clip(kept, 0.0, 1.0)
            base = np.asarray(image.convert("RGB"), dtype=np.float32)
            plain = np.rint(base + (np.float32(opacity) * clipped)[..., None]
                            * (colorize(clipped).astype(np.float32) - base)).astype(int)
            drawn = np.asarray(overlay(image, heat, opacity)).astype(int)
            assert np.abs(drawn - plain).max() <= 1
            assert np.array_equal(drawn[:10], plain[:10])  # zero heat: the image itself
            if opacity == 1.0:
                assert np.array_equal(drawn[-10:], plain[-10:])  # full heat at full opacity: the colour map
    assert np.array_equal(heat, kept)  # the caller's map is not modified
