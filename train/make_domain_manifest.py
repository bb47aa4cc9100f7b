"""Write train/manifests/domain.csv: painting vs calligraphy images drawn from the four
shared task folders (a fixed, seeded sample), for the app's domain model.

    python train/make_domain_manifest.py [--data ../shared/data] [--per-task 150]

Paths are written relative to the manifest's folder, so the manifest works wherever the
repository sits as long as ``../shared`` is beside it.
"""
from __future__ import annotations

import argparse
import csv
import os
import random
from pathlib import Path

from inkapp.data.images import IMAGE_SUFFIXES
from inkapp.paths import shared_data_root
from inkapp.tasks import TASKS, get

DOMAIN_OF = {task: get(task).domain for task in TASKS}


def main() -> None:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(shared_data_root()))
    ap.add_argument("--per-task", type=int, default=150)
    ap.add_argument("--out", default=str(here / "manifests" / "domain.csv"))
    args = ap.parse_args()
    out = Path(args.out)
    rng = random.Random(0)
    rows = []
    for task, domain in DOMAIN_OF.items():
        files = sorted(p for p in (Path(args.data) / task).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        for p in rng.sample(files, min(args.per_task, len(files))):
            rows.append((os.path.relpath(p, out.parent), domain, ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "group"])
        w.writerows(rows)
    print(f"{len(rows)} rows -> {out}")


if __name__ == "__main__":
    main()
