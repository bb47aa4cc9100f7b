"""Training scripts: metrics, leakage-free splits, corrections merge, end-to-end runs, torchrun."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

from inkapp.data.dataset import Sample
from inkapp.data.images import sha256_file
from inkapp.data.splits import group_samples, kfold_splits, split_indices
from inkapp.store.corrections import CorrectionStore
from inkapp.training.metrics import classification_metrics


def test_metrics_equal_scikit_learn() -> None:
    from sklearn import metrics as skm

    y = np.array([0, 0, 1, 1, 2, 2, 2, 1, 0, 2])
    probs = np.array([[.7, .2, .1], [.4, .5, .1], [.1, .8, .1], [.3, .3, .4], [.2, .2, .6],
                      [.1, .1, .8], [.5, .1, .4], [.2, .7, .1], [.6, .3, .1], [.3, .3, .4]])
    m = classification_metrics(y, probs, ["a", "b", "c"])
    pred = probs.argmax(1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    p, r, f, _ = skm.precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
    assert (m["macro_precision"], m["macro_recall"], m["macro_f1"]) == pytest.approx((p, r, f))
    assert m["macro_auc"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    per = skm.f1_score(y, pred, average=None)
    assert [m["per_class"][c]["f1"] for c in "abc"] == pytest.approx(per)


def _painting(path: Path, seed: int, size: tuple[int, int] = (160, 120)) -> None:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(150, 255, 3)))
    d = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = rng.integers(0, size[0]), rng.integers(0, size[1])
        d.ellipse([x0, y0, x0 + rng.integers(5, 60), y0 + rng.integers(5, 60)], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    img.save(path, quality=92)


def test_near_duplicates_never_cross_the_split(tmp_path: Path) -> None:
    samples = []
    for i in range(40):
        label = "ab"[i % 2]
        (tmp_path / label).mkdir(exist_ok=True)
        p = tmp_path / label / f"{i}.jpg"
        _painting(p, i)
        samples.append(Sample(str(p), label))
        if i % 4 == 0:  # a re-post: recompressed and slightly resized copy
            q = tmp_path / label / f"{i}-repost.jpg"
            Image.open(p).resize((150, 112)).save(q, quality=60)
            samples.append(Sample(str(q), label))
    groups = group_samples(samples)
    twins = {Path(s.path).stem.split("-")[0] for s in samples if "repost" in s.path}
    for t in twins:
        idx = [i for i, s in enumerate(samples) if Path(s.path).stem.split("-")[0] == t]
        assert len({groups[i] for i in idx}) == 1
    labels = [s.label for s in samples]
    parts = [split_indices(labels, groups, seed=0)] + kfold_splits(labels, groups, 5)
    for split in parts:
        where = {}
        for part, idx in split.items():
            for i in idx:
                where.setdefault(groups[i], set()).add(part)
        assert all(len(p) == 1 for p in where.values())
        assert sorted(i for idx in split.values() for i in idx) == list(range(len(samples)))


def test_corrections_merge_rules(tmp_path: Path) -> None:
    from inkapp.training.data import merge_corrections

    base = []
    for i, label in enumerate(["a", "a", "b"]):
        (tmp_path / "base" / label).mkdir(parents=True, exist_ok=True)
        p = tmp_path / "base" / label / f"{i}.jpg"
        _painting(p, 100 + i)
        base.append(Sample(str(p), label))
    store = CorrectionStore(tmp_path / "store")
    cls = ["a", "b"]
    sha0 = sha256_file(base[0].path)
    sha1 = sha256_file(base[1].path)
    store.add("t", sha0, "images/x.jpg", "a", 0.9, "b", "ann", "", "v1", cls)      # relabel 0 -> b
    store.add("t", sha1, "images/y.jpg", "a", 0.9, "b", "ann", "", "v1", cls)
    store.add("t", sha1, "images/y.jpg", "a", 0.9, "a", "bob", "", "v1", cls)      # latest wins: 1 stays a
    new_png = tmp_path / "new.png"
    _painting(new_png, 7)
    sha_new, rel = store.store_image(new_png.read_bytes())
    store.add("t", sha_new, rel, "a", 0.5, "b", "ann", "", "v1", cls)             # a new image is added
    store.add("t", sha0, "images/x.jpg", "b", 0.9, "a", "cyd", "", "v1", cls)
    store.revoke_last("t", "cyd")                                                   # revoked: 0 stays b
    with open(store.csv_path, "a") as fh:
        fh.write("garbage,row\n")
    summary: dict = {}
    merged = merge_corrections(base, cls, "t", tmp_path / "store" / "corrections.csv", summary)
    labels = {Path(s.path).name: s.label for s in merged}
    assert labels["0.jpg"] == "b" and labels["1.jpg"] == "a" and labels["2.jpg"] == "b"
    assert labels[Path(rel).name] == "b"
    c = summary["corrections"]
    assert c["malformed"] == 1 and c["revocations"] == 1 and c["added"] == 1 and c["relabelled"] == 1


TINY_PER_CLASS = 12  # the generated set's size per class (../shared/data has hundreds)


def _tiny_config(tmp_path: Path, data: Path, epochs: int = 3, arch: str = "plain") -> Path:
    cfg = {"task": "calligrapher", "domain": "calligraphy", "data": str(data),
           "model": {"arch": arch, "backbone": "tf_efficientnet_lite0", "pretrained": "offline", "image_size": 64,
                     "grayscale": True},
           "train": {"epochs": epochs, "batch_size": 8, "lr": 0.003, "backbone_lr_mult": 0.3, "scheduler": "none",
                     "augment": "none", "early_stop_patience": 0, "label_smoothing": 0.0},
           "dynasty": {"ouyang_xun": "Tang", "zhao_mengfu": "Yuan"}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory, labelled_data: Path) -> Path:
    """Two calligrapher classes of 12 images each (../shared/data or the generated set)."""
    root = tmp_path_factory.mktemp("tiny")
    for cls in ("ouyang_xun", "zhao_mengfu"):
        (root / cls).mkdir()
        for f in sorted((labelled_data / "calligrapher" / cls).iterdir())[:TINY_PER_CLASS]:
            shutil.copy(f, root / cls / f.name)
    return root


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "INKAPP_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


def test_tiny_end_to_end_train_then_evaluate(tmp_path: Path, tiny_data: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "inkapp", "train", "--config", str(_tiny_config(tmp_path, tiny_data)), "--out", str(out)]
    subprocess.run(cmd, check=True, env=_env(tmp_path), capture_output=True, text=True)
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for f in ("model.safetensors", "card.json", "split.json", "data_summary.json", "figures/confusion_counts.png",
              "figures/roc.html", "figures/curves.png"):
        assert (out / f).is_file(), f
    card = json.loads((out / "card.json").read_text())
    assert card["dynasty"]["zhao_mengfu"] == "Yuan" and card["preprocessing"]["grayscale"] is True
    split = json.loads((out / "split.json").read_text())
    assert sum(len(v) for v in split.values()) == 2 * TINY_PER_CLASS
    r = subprocess.run([sys.executable, "-m", "inkapp", "evaluate", "--task", "calligrapher", "--data", str(tiny_data),
                        "--weights", str(out)], check=True, env=_env(tmp_path), capture_output=True, text=True)
    result = json.loads(r.stdout)
    assert set(result) == {"task", "n", "accuracy", "macro_precision", "macro_recall", "macro_f1", "macro_auc",
                           "classes", "confusion_matrix"}
    assert result["n"] == 2 * TINY_PER_CLASS
    bad = tmp_path / "bad"
    shutil.copytree(tiny_data, bad)
    (bad / "wang_xizhi").mkdir()
    shutil.copy(next((tiny_data / "ouyang_xun").iterdir()), bad / "wang_xizhi" / "x.png")
    r = subprocess.run([sys.executable, "-m", "inkapp", "evaluate", "--task", "calligrapher", "--data", str(bad),
                        "--weights", str(out)], env=_env(tmp_path), capture_output=True, text=True)
    assert r.returncode != 0 and "wang_xizhi" in r.stderr and "Traceback" not in r.stderr

    (tmp_path / "broken.png").write_bytes(b"not an image")
    good = next((tiny_data / "zhao_mengfu").iterdir())
    r = subprocess.run([sys.executable, "-m", "inkapp", "predict", "--task", "calligrapher", "--weights", str(out),
                        str(tmp_path / "broken.png"), str(good)], env=_env(tmp_path), capture_output=True, text=True)
    assert r.returncode == 1 and "broken.png" in r.stderr and "Traceback" not in r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(lines) == 1 and set(lines[0]) == {"image", "task", "label", "confidence", "uncertain", "answer_set", "probabilities"}


def test_torchrun_two_process_smoke(tmp_path: Path, tiny_data: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "inkapp", "train",
           "--config", str(_tiny_config(tmp_path, tiny_data, epochs=1)), "--out", str(out)]
    r = subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "model.safetensors").is_file() and (out / "metrics.json").is_file()


def test_resume_continues_from_checkpoint(tmp_path: Path, tiny_data: Path) -> None:
    out = tmp_path / "run"
    cfg = _tiny_config(tmp_path, tiny_data, epochs=2)
    base = [sys.executable, "-m", "inkapp", "train", "--config", str(cfg), "--out", str(out)]
    subprocess.run(base + ["--epochs", "1"], check=True, env=_env(tmp_path), capture_output=True)
    r = subprocess.run(base + ["--resume"], check=True, env=_env(tmp_path), capture_output=True, text=True)
    assert "resumed from epoch 1" in r.stderr
    assert [h["epoch"] for h in json.loads((out / "metrics.json").read_text())["history"]] == [1, 2]


def test_a_reused_split_is_kept_and_recorded_in_the_card(tmp_path: Path, tiny_data: Path) -> None:
    """``--split`` keeps every listed file in its part, and the card and its README say the
    split was reused (not made with the config's grouping)."""
    from inkapp.training.ship import model_card_markdown

    cfg = _tiny_config(tmp_path, tiny_data, epochs=1)
    first, second = tmp_path / "first", tmp_path / "second"
    subprocess.run([sys.executable, "-m", "inkapp", "train", "--config", str(cfg), "--out", str(first)],
                   check=True, env=_env(tmp_path), capture_output=True)
    subprocess.run([sys.executable, "-m", "inkapp", "train", "--config", str(cfg), "--out", str(second), "--seed", "3",
                    "--split", str(first / "split.json")], check=True, env=_env(tmp_path), capture_output=True)
    parts = [{part: sorted(Path(e["path"]).name for e in entries) for part, entries in
              json.loads((run / "split.json").read_text()).items()} for run in (first, second)]
    assert parts[0] == parts[1]
    cards = [json.loads((run / "card.json").read_text()) for run in (first, second)]
    assert "reused_from" not in cards[0]["training"]["split"]
    assert cards[1]["training"]["split"]["reused_from"] == str(first / "split.json")
    assert f"the split of `{first / 'split.json'}` reused" in model_card_markdown(cards[1])
    assert "near-duplicates grouped" in model_card_markdown(cards[0])
