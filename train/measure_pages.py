"""Measure page attribution (issue 13) and write ``docs/results/pages.json`` + ``pages.md``.

* synthetic pages of calligrapher TEST-split characters (never seen in training; the
  thresholds were set on VAL pages): finding recall/precision at IoU ≥ 0.5, page
  accuracy, abstain rate and accuracy when not abstaining, per characters per page;
* real pages of ``../shared/data/calligraphy-script``: characters found per regular
  page (all of them), and the abstain rate on the script model's TEST-split regular,
  clerical and seal pages; a few paintings; ``--look`` folder gets 6 regular pages
  with their boxes drawn (third-party images: never commit them);
* seconds per page for a 512 px and a 4000 px page (median of 3, ``--threads``).

Usage: ``python train/measure_pages.py [--pages-per-n 40] [--seed 2] [--look /tmp/pages-look]``
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from inkapp.data.images import load_image
from inkapp.inference import Predictor
from inkapp.pages.attribute import attribute_page
from inkapp.pages.draw import draw_boxes
from inkapp.pages.evaluate import characters_by_label, evaluation_pages, matched
from inkapp.pages.ink import find_ink
from inkapp.pages.layout import character_boxes
from inkapp.pages.synthetic import PageSpec, compose_page
from inkapp.paths import shipped_weights

ROOT = Path(__file__).resolve().parents[1]
N_VALUES = (1, 4, 8, 16)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def synthetic_table(calligrapher: Predictor, script: Predictor, pages_per_n: int, seed: int) -> list[dict]:
    test = characters_by_label(shipped_weights("calligrapher") / "split.json", "test")
    rows: dict[int, dict] = {}
    for page in evaluation_pages(test, N_VALUES, pages_per_n, seed):
        a = attribute_page(page.image, calligrapher, script)
        r = rows.setdefault(page.spec.n, Counter())
        found = [c.box for c in a.characters]
        m = matched(page.truth, found)
        top = max(a.probabilities, key=a.probabilities.__getitem__) if a.probabilities else None
        r.update(pages=1, truth=len(page.truth), found=len(found), matched=m, top_correct=int(top == page.label),
                 abstained=int(a.attribution is None), attributed_correct=int(a.attribution == page.label),
                 chars_correct=sum(c.label == page.label for c in a.characters))
        r[f"reason:{a.reason}"] += 1
        log(f"n={page.spec.n} {page.label} -> {a.attribution} ({a.reason}), found {len(found)}/{len(page.truth)}")
    table = []
    for n, r in sorted(rows.items()):
        attributed = r["pages"] - r["abstained"]
        table.append({
            "characters_per_page": n, "pages": r["pages"],
            "finding_recall": round(r["matched"] / r["truth"], 4),
            "finding_precision": round(r["matched"] / r["found"], 4) if r["found"] else None,
            "character_accuracy": round(r["chars_correct"] / r["found"], 4) if r["found"] else None,
            "page_accuracy_top1": round(r["top_correct"] / r["pages"], 4),
            "abstain_rate": round(r["abstained"] / r["pages"], 4),
            "accuracy_when_attributed": round(r["attributed_correct"] / attributed, 4) if attributed else None,
            "reasons": {k.split(":", 1)[1]: v for k, v in sorted(r.items()) if k.startswith("reason:")},
        })
    return table


def real_pages(calligrapher: Predictor, script: Predictor, look: Path | None) -> dict:
    data = ROOT.parent / "shared" / "data"
    regular = sorted((data / "calligraphy-script" / "kaishu_regular").glob("*.jpg"))
    counts = []
    for path in regular:
        counts.append(len(character_boxes(find_ink(load_image(path)).ink)[0]))
    c = np.array(counts)
    out: dict = {"regular_pages_characters_found": {
        "pages": len(c), "mean": round(float(c.mean()), 2), "median": float(np.median(c)),
        "quartiles": [float(q) for q in np.percentile(c, (25, 75))], "min": int(c.min()), "max": int(c.max()),
        "pages_with_none": int((c == 0).sum()), "pages_with_1_to_3": int(((c >= 1) & (c <= 3)).sum())}}
    log(f"regular pages: {out['regular_pages_characters_found']}")
    split = json.loads((shipped_weights("calligraphy-script") / "split.json").read_text())["test"]
    by_label: dict[str, dict] = {}
    looked = 0
    for r in split:
        img = load_image(r["path"])
        a = attribute_page(img, calligrapher, script)
        s = by_label.setdefault(r["label"], Counter())
        s.update(pages=1, abstained=int(a.attribution is None))
        s[f"reason:{a.reason}"] += 1
        if a.attribution:
            s[f"attributed:{a.attribution}"] += 1
        if look is not None and r["label"] == "kaishu_regular" and looked < 6:
            look.mkdir(parents=True, exist_ok=True)
            draw_boxes(img, a).save(look / f"page{looked + 1}-{Path(r['path']).stem}.png")
            looked += 1
        log(f"{r['label']} {Path(r['path']).name}: {a.attribution} ({a.reason}), {a.found} found")
    out["script_test_split_pages"] = {k: {
        "pages": v["pages"], "abstain_rate": round(v["abstained"] / v["pages"], 4),
        "reasons": {x.split(":", 1)[1]: n for x, n in sorted(v.items()) if x.startswith("reason:")},
        "attributed": {x.split(":", 1)[1]: n for x, n in sorted(v.items()) if x.startswith("attributed:")}}
        for k, v in sorted(by_label.items())}
    paintings = sorted((data / "painting-subject").glob("*/*.jpg"))
    sample = random.Random(0).sample(paintings, min(30, len(paintings)))
    reasons = Counter(attribute_page(load_image(p), calligrapher, script).reason for p in sample)
    out["paintings"] = {"pages": len(sample), "abstain_rate": round(1 - reasons["attributed"] / len(sample), 4),
                        "reasons": dict(sorted(reasons.items()))}
    return out


def timing(calligrapher: Predictor, script: Predictor, seed: int) -> dict:
    test = characters_by_label(shipped_weights("calligrapher") / "split.json", "test")
    rng = np.random.default_rng(seed)
    chars = [Image.open(p).convert("L") for p in test["ouyang_xun"][:16]]
    spec = PageSpec(16, "columns", False, False, True, 96, 0.2, 4.0, 0.5, 80)
    page, _ = compose_page(chars, spec, rng)
    out = {}
    for side in (512, 4000):
        f = side / max(page.size)
        img = page.resize((round(page.width * f), round(page.height * f)), Image.Resampling.BICUBIC)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            attribute_page(img, calligrapher, script)
            times.append(time.perf_counter() - t)
        out[f"{side}px"] = {"size": list(img.size), "seconds_median": round(statistics.median(times), 3),
                            "characters": 16}
    return out


def markdown(doc: dict) -> str:
    lines = ["| characters/page | pages | finding recall | finding precision | character acc. | page acc. (top-1) "
             "| abstain rate | acc. when attributed |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in doc["synthetic_test_pages"]:
        lines.append(f"| {r['characters_per_page']} | {r['pages']} | {r['finding_recall']} | {r['finding_precision']} "
                     f"| {r['character_accuracy']} | {r['page_accuracy_top1']} | {r['abstain_rate']} "
                     f"| {r['accuracy_when_attributed']} |")
    real = doc["real"]
    lines += ["", f"Real regular-script pages: characters found {json.dumps(real['regular_pages_characters_found'])}",
              "", "Script model TEST-split pages: " + json.dumps(real["script_test_split_pages"]),
              "", "Paintings: " + json.dumps(real["paintings"]),
              "", f"Seconds per page ({doc['threads']} torch threads, CPU): " + json.dumps(doc["timing"])]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages-per-n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--look", type=Path, default=None, help="folder for 6 drawn real pages (not the repository)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "pages.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.chdir(ROOT)
    calligrapher = Predictor.from_folder(shipped_weights("calligrapher"), device="cpu")
    script = Predictor.from_folder(shipped_weights("calligraphy-script"), device="cpu")
    doc = {"calligrapher_version": calligrapher.version, "settings": calligrapher.card.get("page_attribution"),
           "seed": args.seed, "threads": args.threads,
           "synthetic_test_pages": synthetic_table(calligrapher, script, args.pages_per_n, args.seed),
           "timing": timing(calligrapher, script, args.seed)}
    doc["real"] = real_pages(calligrapher, script, args.look)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((args.out, json.dumps(doc, indent=1) + "\n"), (args.out.with_suffix(".md"), markdown(doc))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
