"""The harder own test's grouping (issue 15): pages of one source work and loose near-duplicates
stay on one side of every split; names that are only a repository's numbering do not group."""
from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
from PIL import Image

from fallback_data import stroke_image
from inkapp.data.dataset import scan_imagefolder
from inkapp.data.splits import group_samples, hamming_links, kfold_splits, oversized_groups, source_works, split_indices

#: (class, file, source_path): three pages of one titled work, numbered scrapes, and a naming scheme.
ROWS = [("kaishu", f"p{i}.png", f"data/kaishu/多宝塔碑_页面_{i:03d}.jpg") for i in range(3)] + \
       [("kaishu", f"n{i}.png", f"data/kaishu/{293 + i:08d}.jpg") for i in range(9)] + \
       [("lishu", f"g{i}.png", f"datasets/train/gong_bi_hua_{910 + i}.jpg") for i in range(6)] + \
       [("lishu", f"h{i}.png", f"data/paint_photos/human/人物{182 + i}.jpg") for i in range(6)]


def _data(root: Path) -> Path:
    for k, (cls, name, _) in enumerate(ROWS):
        (root / cls).mkdir(parents=True, exist_ok=True)
        stroke_image(0 if cls == "kaishu" else 1, 2, 1000 + k, (96, 96), grayscale=True).save(root / cls / name)
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "source", "source_path", "license_note"])
        for cls, name, source_path in ROWS:
            w.writerow([f"{cls}/{name}", cls, "example/repo", source_path, "test"])
    return root


def test_source_works_are_titled_pages_only(tmp_path: Path) -> None:
    samples = scan_imagefolder(_data(tmp_path))
    works = dict(zip((Path(s.path).name for s in samples), source_works(samples)))
    assert {works[f"p{i}.png"] for i in range(3)} == {"example/repo:data/kaishu/多宝塔碑_页面"}
    assert all(works[n] == "" for n in works if not n.startswith("p"))


def test_loose_grouping_keeps_a_work_and_a_repost_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INKAPP_CACHE_DIR", str(tmp_path / "cache"))
    root = _data(tmp_path / "data")
    repost = root / "lishu" / "g0-repost.jpg"  # recompressed and resized copy of g0
    Image.open(root / "lishu" / "g0.png").convert("RGB").resize((90, 90)).save(repost, quality=70)
    samples = scan_imagefolder(root)
    names = [Path(s.path).name for s in samples]
    strict = group_samples(samples, grouping="strict")
    loose = group_samples(samples, grouping="loose")
    page_groups = {loose[names.index(f"p{i}.png")] for i in range(3)}
    assert len(page_groups) == 1
    assert len({strict[names.index(f"p{i}.png")] for i in range(3)}) == 3  # the strict grouping does not see the work
    assert loose[names.index("g0.png")] == loose[names.index("g0-repost.jpg")]
    assert group_samples(samples, grouping="loose-dhash")[names.index("g0.png")] == \
        group_samples(samples, grouping="loose-dhash")[names.index("g0-repost.jpg")]
    others = [g for n, g in zip(names, loose) if n.startswith(("n", "h")) or n in ("g1.png", "g2.png")]
    assert len(set(others)) == len(others)  # numbering schemes group nothing
    labels = [s.label for s in samples]
    for seed in range(5):
        split = split_indices(labels, loose, ratios=(0.5, 0.25, 0.25), seed=seed)
        side = {i: part for part, idx in split.items() for i in idx}
        assert len({side[names.index(f"p{i}.png")] for i in range(3)}) == 1
    with pytest.raises(ValueError, match="unknown grouping 'tight'"):
        group_samples(samples, grouping="tight")


def test_hamming_links_match_a_bit_count() -> None:
    rng = random.Random(3)
    base = [rng.getrandbits(256) for _ in range(20)]
    hashes = base + [h ^ (1 << rng.randrange(256)) ^ (1 << rng.randrange(256)) for h in base[:5]] + [None]
    links = set(hamming_links(hashes, 12, 256))
    expect = {(a, b) for a in range(len(hashes)) for b in range(a + 1, len(hashes))
              if hashes[a] is not None and hashes[b] is not None and bin(hashes[a] ^ hashes[b]).count("1") <= 12}
    assert links == expect and len(expect) >= 5


def test_a_work_too_big_for_a_fold_is_trained_on_never_tested() -> None:
    labels = ["a"] * 8 + ["a", "b"] * 26
    groups = [0] * 8 + list(range(1, 53))  # images 0-7: one work of class a (8 > 60 / 10 / 2 = 3 images)
    assert oversized_groups(groups, 10) == {0}
    for seed in range(4):
        loose = split_indices(labels, groups, seed=seed, grouping="loose")
        assert set(range(8)) <= set(loose["train"])
        assert sorted(loose["train"] + loose["val"] + loose["test"]) == list(range(60))
        assert loose["val"] and loose["test"]
        for fold in kfold_splits(labels, groups, 5, seed=seed, grouping="loose"):
            assert set(range(8)) <= set(fold["train"])
    # without the rule the work fills the test part (as calligraphy-script's 366-image component did)
    assert set(range(8)) <= set(split_indices(labels, groups, seed=0)["test"])
