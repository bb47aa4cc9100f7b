"""What an ensemble costs the app (issue 15): one upload's analysis by a single model and
by a k-member ensemble of it with the flip view, timed in turn in one process, with the bare
trunk's forward pass as the yardstick that absorbs the machine's load.

    python train/ensemble_speed.py [--task painting-technique] [--members 3] [--runs 5]
    -> docs/results/ensemble-speed.json

The ensemble's members are copies of the shipped model (the time does not depend on the
weights, only on the architecture, so this is what a k-seed ensemble costs). Per repetition:
the trunk's forward on one canvas; then, for the single model and the ensemble, decode of a
synthetic 1000×3000 px scroll (:func:`inkapp.dev.bench.synthetic_scroll`), the display copy
and :meth:`inkapp.inference.Predictor.analyse` (prediction with the card's views, Grad-CAM,
attention maps; overlays are drawn by the app afterwards and cost the same for both).
Medians in milliseconds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from calibrate import REPO  # train/ is on sys.path when this script runs
from inkapp.curation.analysis import display_copy
from inkapp.data.images import decode_image
from inkapp.dev.bench import synthetic_scroll
from inkapp.inference import Predictor
from inkapp.models import create_trunk, load_model
from inkapp.models.ensemble import save_ensemble
from inkapp.paths import shipped_weights
from inkapp.store.files import atomic_write_text

OUT = REPO / "docs" / "results" / "ensemble-speed.json"


def _analysis_seconds(predictor: Predictor, data: bytes) -> float:
    t0 = time.perf_counter()
    image, _ = decode_image(data)
    predictor.analyse(image, map_size=display_copy(image).size)
    return time.perf_counter() - t0


def measure(task: str, members: int, runs: int) -> dict:
    folder = shipped_weights(task)
    single = Predictor.from_folder(folder, "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        models = [load_model(folder)[0] for _ in range(members)]
        card = {k: v for k, v in single.card.items() if k not in ("model", "weights_dtype", "calibration")}
        card["preprocessing"] = {**card["preprocessing"], "tta_hflip": True}
        save_ensemble(models, [single.card] * members, Path(tmp) / "ens", card, cam_member=0, half=True)
        ensemble = Predictor.from_folder(Path(tmp) / "ens", "cpu")
    trunk = create_trunk(single.card["model"]["backbone"], pretrained=None).eval().to(memory_format=torch.channels_last)
    size = single.preprocessor.size
    x1 = torch.randn(1, 3, size, size).contiguous(memory_format=torch.channels_last)
    scroll = synthetic_scroll((1000, 3000))
    times: dict[str, list[float]] = {"trunk_forward": [], "single_analysis": [], "ensemble_analysis": []}
    for i in range(runs + 1):  # the first repetition warms up
        with torch.inference_mode():
            t0 = time.perf_counter()
            trunk.forward_features(x1)
            t = {"trunk_forward": time.perf_counter() - t0}
        t["single_analysis"] = _analysis_seconds(single, scroll)
        t["ensemble_analysis"] = _analysis_seconds(ensemble, scroll)
        if i:
            for k, v in t.items():
                times[k].append(v)
    ms = {k: round(statistics.median(v) * 1000, 1) for k, v in times.items()}
    return {"task": task, "members": members, "tta_hflip": True, "single_tta_hflip": single.scoring.tta_hflip,
            "runs": runs, "threads": torch.get_num_threads(), "load_average": list(os.getloadavg()),
            "median_ms": ms,
            "ensemble_over_single": round(ms["ensemble_analysis"] / ms["single_analysis"], 2),
            "single_over_trunk": round(ms["single_analysis"] / ms["trunk_forward"], 2),
            "ensemble_over_trunk": round(ms["ensemble_analysis"] / ms["trunk_forward"], 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="painting-technique")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    result = measure(args.task, args.members, args.runs)
    print(json.dumps(result, indent=1))
    atomic_write_text(OUT, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
