"""Similar works, duplicates and suspect labels: the persisted vector index (add, query,
persist, reload, concurrent writer processes, a writer SIGKILLed mid-write), similar
works and duplicate pairs over a generated folder with the shipped calligrapher model,
and cleanlab's ranking of known flipped labels."""
from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inkapp.cli import main as cli_main
from inkapp.collection.duplicates import duplicate_pairs, index_scan, threshold_for
from inkapp.collection.similar import collection_index, index_analysed, similar_works, GENERIC_INDEX
from inkapp.collection.suspects import (NOTE_KEPT, NOTE_RELABELLED, Suspect, decide_suspect, load_suspects,
                                        out_of_fold_probabilities, suspect_queue, suspects_from)
from inkapp.inference import Predictor
from inkapp.paths import shipped_weights
from inkapp.scan import scan
from inkapp.store.corrections import CorrectionStore
from inkapp.store.vectors import VectorIndex, VectorIndexError

TASK = "calligrapher"
DIM = 32


def sha(i: int | str) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------- the index


def test_index_add_query_persist_reload(tmp_path: Path) -> None:
    x = unit_vectors(40)
    index = VectorIndex(tmp_path, "t")
    assert index.add([sha(i) for i in range(40)], x, [{"label": f"c{i % 3}"} for i in range(40)], "space-a") == 40
    hits = index.search(x[7], 3)[0]
    assert hits[0].sha256 == sha(7) and hits[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert hits[0].meta == {"label": "c1", "sha256": sha(7)}
    assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)
    assert [h.sha256 for h in index.search(x[7], 3, exclude=[sha(7)])[0]] == [h.sha256 for h in hits[1:]] + [
        index.search(x[7], 4)[0][3].sha256]

    reloaded = VectorIndex(tmp_path, "t")  # a fresh object reads the files
    assert len(reloaded) == 40 and reloaded.space == "space-a"
    assert [h.sha256 for h in reloaded.search(x[7], 3)[0]] == [h.sha256 for h in hits]
    np.testing.assert_allclose(reloaded.vectors([sha(3)])[0], x[3], atol=1e-6)

    # replacing an image keeps one entry; merge_meta keeps keys the new row lacks
    assert reloaded.add([sha(3)], -x[3], [{"note": "n"}], "space-a", merge_meta=True) == 0
    assert len(index) == 40 and index.items()[sha(3)] == {"label": "c0", "note": "n", "sha256": sha(3)}
    assert index.search(-x[3], 1)[0][0].sha256 == sha(3)
    assert index.remove([sha(0), sha(1), "0" * 64]) == 2 and len(VectorIndex(tmp_path, "t")) == 38
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["t.json", "t.lock", json.loads((tmp_path / "t.json").read_text())["index_file"]])


def test_index_rejects_bad_input(tmp_path: Path) -> None:
    index = VectorIndex(tmp_path, "t")
    index.add([sha(1)], unit_vectors(1), [{}], "space-a")
    with pytest.raises(VectorIndexError, match="holds embeddings of 'space-a', not 'space-b'"):
        index.add([sha(2)], unit_vectors(1), [{}], "space-b")
    with pytest.raises(VectorIndexError, match="dimension 8, index 't' holds 32"):
        index.add([sha(2)], unit_vectors(1, 8), [{}], "space-a")
    with pytest.raises(VectorIndexError, match="not a sha256 hex digest"):
        index.add(["abc"], unit_vectors(1), [{}], "space-a")
    with pytest.raises(VectorIndexError, match="all zeros"):
        index.add([sha(2)], np.zeros((1, DIM)), [{}], "space-a")
    with pytest.raises(VectorIndexError, match="bad index name"):
        VectorIndex(tmp_path, "../x")
    assert len(index) == 1
    # a new model version: the index of the old space is emptied under the lock, then filled
    assert index.add([sha(3)], unit_vectors(1, 8), [{}], "space-b", reset_other_space=True) == 1
    assert (index.space, list(index.items())) == ("space-b", [sha(3)])


WRITER = """
import hashlib, sys, numpy as np
from inkapp.store.vectors import VectorIndex
folder, worker, per_worker, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
index = VectorIndex(folder, "shared")
for start in range(0, per_worker, batch):
    ids = [worker * 1000 + i for i in range(start, start + batch)]
    vecs = np.stack([np.random.default_rng(i).standard_normal(32).astype(np.float32) for i in ids])
    index.add([hashlib.sha256(str(i).encode()).hexdigest() for i in ids], vecs, [{"worker": str(worker)}] * batch,
              "space")
"""


def test_concurrent_writer_processes_lose_nothing(tmp_path: Path) -> None:
    workers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w), "40", "2"]) for w in range(4)]
    assert [p.wait(180) for p in workers] == [0, 0, 0, 0]
    index = VectorIndex(tmp_path, "shared")
    items = index.items()
    assert len(items) == 160 and len(index) == 160  # 4 writers × 20 commits, none lost
    for w in range(4):
        for i in (0, 17, 39):
            key = w * 1000 + i
            assert items[sha(key)]["worker"] == str(w)
            query = np.random.default_rng(key).standard_normal(32).astype(np.float32)
            assert index.search(query, 1)[0][0].sha256 == sha(key)
    assert len(list(tmp_path.glob("shared.*.faiss"))) == 1


KILL_WRITER = """
import hashlib, sys, numpy as np
from inkapp.store.vectors import VectorIndex
index = VectorIndex(sys.argv[1], "big")
rng = np.random.default_rng(0)
step = 0
while True:
    ids = [step * 500 + i for i in range(500)]
    x = rng.standard_normal((500, 1024)).astype(np.float32)
    index.add([hashlib.sha256(str(i).encode()).hexdigest() for i in ids], x, [{"step": str(step)}] * 500, "s")
    print(step, flush=True)
    step += 1
"""


def test_writer_killed_mid_write_leaves_a_usable_index(tmp_path: Path) -> None:
    """SIGKILL a writer whose every commit rewrites a growing index (tens of MB), at
    moments where it is writing; the last committed generation must load intact."""
    mid_write_kills = 0
    for attempt in range(6):
        proc = subprocess.Popen([sys.executable, "-c", KILL_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()  # one generation committed
        time.sleep(0.05 + 0.1 * attempt)
        # kill while a temporary or a not-yet-committed index file is on disk
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                list(tmp_path.glob(".big.*.tmp")) or len(list(tmp_path.glob("big.*.faiss"))) > 1):
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        left = [p.name for p in tmp_path.iterdir()]
        mid_write_kills += any(n.endswith(".tmp") for n in left) or sum(n.endswith(".faiss") for n in left) > 1
        index = VectorIndex(tmp_path, "big")
        n = len(index)  # loads: the sidecar names a complete index file with as many vectors
        assert n > 0 and n % 500 == 0
        steps = {m["step"] for m in index.items().values()}
        assert steps == {str(s) for s in range(n // 500)}
        hit = index.search(index.vectors([sha(n - 1)]), 1)[0][0]
        assert hit.sha256 == sha(n - 1)
        if mid_write_kills >= 2:
            break
    assert mid_write_kills >= 2
    # the next writer cleans up the torn generation
    index.add([sha("after")], unit_vectors(1, 1024), [{"step": "x"}], "s")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".faiss"))] == [
        json.loads((tmp_path / "big.json").read_text())["index_file"]]


# ---------------------------------------------------------------- similar works and duplicates


def character(i: int) -> Image.Image:
    """A 64×64 grayscale 'character': random ink strokes on paper, distinct per ``i``."""
    rng = np.random.default_rng(i)
    img = Image.new("L", (64, 64), 255)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 7))):
        x0, y0, x1, y1 = (int(v) for v in rng.integers(6, 58, 4))
        draw.line((x0, y0, x1, y1), fill=int(rng.integers(0, 60)), width=int(rng.integers(3, 8)))
    return img


def jpeg_bytes(img: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    folder = shipped_weights(TASK)
    if not (folder / "model.safetensors").is_file():
        pytest.skip(f"shipped {TASK} weights not found in {folder}")
    return Predictor.from_folder(folder, "cpu")


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    """8 distinct characters as PNG plus a JPEG re-encoding of character 0."""
    root = tmp_path / "collection"
    root.mkdir()
    for i in range(8):
        character(i).save(root / f"c{i}.png")
    (root / "c0-copy.jpg").write_bytes(jpeg_bytes(character(0)))
    return root


def test_similar_works_finds_the_reencoded_copy_first(tmp_path: Path, collection: Path, predictor: Predictor) -> None:
    data = tmp_path / "data"
    for i in range(1, 8):
        index_analysed((collection / f"c{i}.png").read_bytes(), TASK, predictor=predictor, data_dir=data)
    copy = index_analysed((collection / "c0-copy.jpg").read_bytes(), TASK, label="ouyang_xun", predictor=predictor,
                          data_dir=data)
    assert copy.new and copy.label == "ouyang_xun" and (data / copy.image_path).is_file()
    assert len(collection_index(TASK, data)) == 8 and len(collection_index(GENERIC_INDEX, data)) == 8

    neighbours = similar_works((collection / "c0.png").read_bytes(), TASK, k=3, predictor=predictor, data_dir=data)
    assert [n.sha256 for n in neighbours][0] == copy.sha256
    assert neighbours[0].label == "ouyang_xun" and neighbours[0].label_source == "given"
    assert Path(neighbours[0].image_path).read_bytes() == (collection / "c0-copy.jpg").read_bytes()
    assert neighbours[0].similarity > neighbours[1].similarity >= neighbours[2].similarity
    # the query image itself is left out once it is indexed
    assert copy.sha256 not in [n.sha256 for n in similar_works(
        (collection / "c0-copy.jpg").read_bytes(), TASK, k=3, predictor=predictor, data_dir=data)]
    # an expert correction overrides the stored label
    CorrectionStore(data).add(TASK, copy.sha256, copy.image_path, "ouyang_xun", 0.5, "zhao_mengfu", "expert", "",
                              predictor.version, predictor.classes)
    first = similar_works((collection / "c0.png").read_bytes(), TASK, k=1, predictor=predictor, data_dir=data)[0]
    assert (first.label, first.label_source) == ("zhao_mengfu", "expert")
    with pytest.raises(ValueError, match="k must be >= 1"):
        similar_works((collection / "c0.png").read_bytes(), TASK, k=0, predictor=predictor, data_dir=data)
    with pytest.raises(ValueError, match="unknown label 'landscape'"):
        index_analysed((collection / "c0.png").read_bytes(), TASK, label="landscape", predictor=predictor,
                       data_dir=data)
    assert len(collection_index(TASK, data)) == 8


def test_scan_duplicates_pairs_the_copy_and_flags_disagreeing_labels(
        tmp_path: Path, collection: Path, predictor: Predictor) -> None:
    data = tmp_path / "data"
    out = tmp_path / "scan.csv"
    scan(collection, out, predictor, batch_size=4, workers=0, progress=False)
    shas, errors = index_scan(collection, out, TASK, data_dir=data, predictor=predictor)
    assert len(shas) == 9 and errors == []
    pairs = duplicate_pairs(TASK, data_dir=data, among=shas, threshold=0.9)
    assert len(pairs) == 1
    pair = pairs[0]
    assert {Path(pair.a.image_path).name, Path(pair.b.image_path).name} == {"c0.png", "c0-copy.jpg"}
    assert pair.similarity >= 0.9 and pair.a.label_source == "model"
    assert pair.labels_disagree == (pair.a.label != pair.b.label)
    # an expert gives one side another label: the pair is flagged for review
    other = next(c for c in predictor.classes if c != pair.a.label)
    CorrectionStore(data).store_image((collection / "c0.png").read_bytes())
    side = pair.a if Path(pair.a.image_path).name == "c0.png" else pair.b
    CorrectionStore(data).add(TASK, side.sha256, f"images/{side.sha256[:2]}/{side.sha256}.png", side.label, 0.9,
                              other if side.label == pair.a.label else pair.a.label, "expert", "", "", predictor.classes)
    flagged = duplicate_pairs(TASK, data_dir=data, threshold=0.9)
    assert len(flagged) == 1 and flagged[0].labels_disagree and flagged[0].to_dict()["labels_disagree"] is True
    # by default the calligraphy threshold applies, with or without the task
    assert threshold_for(TASK) == 0.95 and threshold_for("painting-subject") == 0.85
    strict = [(p.a.sha256, p.b.sha256) for p in flagged if p.similarity >= 0.95]
    assert [(p.a.sha256, p.b.sha256) for p in duplicate_pairs(TASK, data_dir=data)] == strict
    assert [(p.a.sha256, p.b.sha256) for p in duplicate_pairs(data_dir=data)] == strict
    # scanning again embeds nothing new and finds the same pair
    assert index_scan(collection, out, TASK, data_dir=data, predictor=predictor)[0] == shas
    assert len(collection_index(TASK, data)) == 9


def test_cli_scan_duplicates_and_similar(tmp_path: Path, collection: Path, predictor: Predictor,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("INKAPP_DATA_DIR", str(tmp_path / "data"))
    assert cli_main(["scan", str(collection), "--task", TASK, "--out", str(tmp_path / "s.csv"), "--workers", "0",
                     "--duplicates", "--threshold", "0.9"]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert len(lines) == 1 and {Path(lines[0]["a"]["image_path"]).name, Path(lines[0]["b"]["image_path"]).name} == {
        "c0.png", "c0-copy.jpg"}
    assert "9 images indexed, 1 near-duplicate pairs" in captured.err
    assert cli_main(["similar", str(collection / "c0.png"), "--k", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc["similar"]) == [TASK]
    assert Path(doc["similar"][TASK][0]["image_path"]).name == "c0-copy.jpg" and len(doc["similar"][TASK]) == 2
    assert cli_main(["similar", str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err


# ---------------------------------------------------------------- suspects


def test_out_of_fold_cleanlab_ranks_flipped_labels_first() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 20)) * 3
    labels = np.repeat(np.arange(3), 100)
    features = (centres[labels] + rng.standard_normal((300, 20))).astype(np.float32)
    flipped = rng.choice(300, 15, replace=False)
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + 1) % 3
    probs = out_of_fold_probabilities(features, noisy, list(range(300)), folds=5)
    assert probs.shape == (300, 3) and np.allclose(probs.sum(1), 1)
    suspects = suspects_from([f"img{i}.png" for i in range(300)], noisy, probs, ["a", "b", "c"],
                             [sha(i) for i in range(300)])
    top = {int(s.image_path[3:-4]) for s in suspects[:15]}
    assert len(top & set(flipped.tolist())) >= 13  # 13 of 15 with this seed
    assert [s.rank for s in suspects] == list(range(1, len(suspects) + 1))
    assert all(suspects[i].quality <= suspects[i + 1].quality for i in range(len(suspects) - 1))
    with pytest.raises(ValueError, match="every class needs at least 5 images"):
        out_of_fold_probabilities(features[:8], np.array([0] * 5 + [1] * 3), list(range(8)), folds=5)
    with pytest.raises(ValueError, match="at least 2 classes"):
        out_of_fold_probabilities(features[:8], np.zeros(8, dtype=int), list(range(8)), folds=5)


def test_suspect_queue_leaves_out_decided_images(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    paths, shas = [], []
    for i in range(3):
        p = images / f"s{i}.png"
        character(100 + i).save(p)
        paths.append(str(p))
        shas.append(hashlib.sha256(p.read_bytes()).hexdigest())
    ranked = [Suspect(rank=i + 1, image_path=paths[i], sha256=shas[i], given_label="a", predicted_label="b",
                      quality=0.1 * (i + 1), probabilities={"a": 0.1 * (i + 1), "b": 1 - 0.1 * (i + 1)})
              for i in range(3)]
    ranking = tmp_path / "suspects.json"
    ranking.write_text(json.dumps({"suspects": [s.__dict__ for s in ranked]}))
    data = tmp_path / "data"
    assert [s.sha256 for s in suspect_queue("t", data, ranking)] == shas
    kept = decide_suspect(ranked[0], "t", "a", "expert", ["a", "b"], data_dir=data)
    relabelled = decide_suspect(ranked[1], "t", "b", "expert", ["a", "b"], data_dir=data)
    assert (kept["corrected_label"], kept["note"], kept["predicted_label"]) == ("a", NOTE_KEPT, "b")
    assert (relabelled["corrected_label"], relabelled["note"]) == ("b", NOTE_RELABELLED)
    assert [s.sha256 for s in suspect_queue("t", data, ranking)] == [shas[2]]
    assert [s.sha256 for s in suspect_queue("other-task", data, ranking)] == shas
    assert load_suspects(ranking) == ranked
    with pytest.raises(FileNotFoundError, match="no suspect ranking"):
        load_suspects(tmp_path / "none.json")
