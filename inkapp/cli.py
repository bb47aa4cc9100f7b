"""The ``inkapp`` command line. Heavy imports happen inside each subcommand so
``inkapp --help`` stays fast."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _models(args: argparse.Namespace) -> int:
    from .models import build_model, describe, list_variants

    rows = []
    for name in list_variants():
        d = describe(name)
        m = build_model({"arch": name, "num_classes": 4, "pretrained": None})
        rows.append({"name": name, "arch": d["arch"], "backbone": d.get("backbone"), "image_size": d.get("image_size"),
                     "grayscale": d.get("grayscale"), "options": d.get("options", {}),
                     "params": sum(p.numel() for p in m.parameters()), "description": d.get("description", "")})
        if args.time:
            rows[-1]["forward_ms_median"] = _median_forward_ms(m, d["image_size"], args.time, args.threads)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        timed = " forward ms" if args.time else ""
        print(f"{'name':24} {'backbone':24} {'size':>5} {'params (4 classes)':>19}{timed}  description")
        for r in rows:
            t = f" {r['forward_ms_median']:>10.1f}" if args.time else ""
            print(f"{r['name']:24} {str(r['backbone']):24} {r['image_size']:>5} {r['params']:>19,}{t}  {r['description']}")
    return 0


def _median_forward_ms(model, size: int, runs: int, threads: int) -> float:
    """Median wall time (ms) of a batch-1 CPU forward at size×size, after 2 warm-up runs."""
    import statistics
    import time

    import torch

    torch.set_num_threads(threads)
    model.eval()
    x = torch.randn(1, 3, size, size)
    times = []
    with torch.inference_mode():
        for i in range(runs + 2):
            t = time.perf_counter()
            model(x)
            if i >= 2:
                times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 2)


def _model_folder(task: str, weights: str | None) -> Path:
    from .paths import shipped_weights

    return Path(weights) if weights else shipped_weights(task)


def _train(args: argparse.Namespace) -> int:
    from datetime import datetime

    from .training.config import load_config
    from .training.run import run

    overrides = {}
    if args.data:
        overrides["data"] = args.data
    if args.epochs is not None:
        overrides["train.epochs"] = args.epochs
    if args.seed is not None:
        overrides["train.seed"] = args.seed
    cfg = load_config(args.config, overrides)
    out = Path(args.out) if args.out else Path("runs") / f"{cfg.task}-{datetime.now():%Y%m%d-%H%M%S}"
    run(cfg, out, corrections=args.corrections, resume=args.resume, split_file=args.split,
        log=lambda s: print(s, file=sys.stderr, flush=True))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .training.evaluate import evaluate_folder

    result = evaluate_folder(_model_folder(args.task, args.weights), args.data, args.task)
    print(json.dumps(result))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .data.images import ImageError, load_image
    from .inference import Predictor

    predictor = Predictor.from_folder(_model_folder(args.task, args.weights))
    status = 0
    for path in args.images:
        try:
            img = load_image(path)
        except (ImageError, OSError) as err:
            print(f"{path}: {err}", file=sys.stderr)
            status = 1
            continue
        p = predictor.predict([img])[0]
        print(json.dumps({"image": path, "task": predictor.task, "label": p.label, "confidence": round(p.confidence, 6),
                          "probabilities": {k: round(v, 6) for k, v in p.probabilities.items()}}, ensure_ascii=False),
              flush=True)
    return status


def _scan(args: argparse.Namespace) -> int:
    from .scan import run_scan

    summary = run_scan(args.dir, args.out, _model_folder(args.task, args.weights), args.batch_size, args.workers)
    print(f"scan: {summary.scanned} images classified ({summary.errors} errors), {summary.skipped} already in "
          f"{args.out}, {summary.seconds:.1f} s", file=sys.stderr)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .dev.bench import run_bench

    return run_bench(tasks=args.tasks, quick=args.quick, as_json=args.json, out=args.out, threads=args.threads)


def _cv(args: argparse.Namespace) -> int:
    from .training.experiments import cross_validate

    overrides = {"train.epochs": args.epochs} if args.epochs is not None else {}
    cross_validate(args.config, args.folds, args.out, overrides, data=args.data)
    return 0


def _ablate(args: argparse.Namespace) -> int:
    from .training.experiments import ablate

    overrides = {"train.epochs": args.epochs} if args.epochs is not None else {}
    ablate(args.config, [v.strip() for v in args.variants.split(",") if v.strip()], args.seeds, args.out, overrides,
           data=args.data)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .ui.app import launch

    launch()
    return 0


def _hash_password(args: argparse.Namespace) -> int:
    import getpass

    from .auth import hash_password

    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("password: ")
    if not password:
        raise ValueError("empty password")
    print(f"{args.name}={hash_password(password)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inkapp", description="Curation studio for Chinese ink paintings and calligraphy.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("models", help="list registered architectures and variants with parameter counts")
    s.add_argument("--json", action="store_true")
    s.add_argument("--time", type=int, default=0, metavar="RUNS",
                   help="also time RUNS batch-1 CPU forwards at the default input size (median, ms)")
    s.add_argument("--threads", type=int, default=2, help="torch threads for --time")
    s.set_defaults(func=_models)

    s = sub.add_parser("train", help="train a model from a YAML config")
    s.add_argument("--config", required=True)
    s.add_argument("--data", help="ImageFolder tree or CSV manifest (overrides the config)")
    s.add_argument("--corrections", help="experts' corrections CSV merged on top of the data")
    s.add_argument("--out", help="run folder (default runs/<task>-<time>)")
    s.add_argument("--epochs", type=int)
    s.add_argument("--seed", type=int)
    s.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    s.add_argument("--split", help="reuse a saved split.json (e.g. the shipped model's): listed files keep their part, "
                                   "new files (corrections) go to train")
    s.set_defaults(func=_train)

    s = sub.add_parser("evaluate", help="evaluate a model on an ImageFolder tree; prints one JSON object")
    s.add_argument("--task", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--weights", help="model folder (default: the shipped weights for TASK)")
    s.set_defaults(func=_evaluate)

    s = sub.add_parser("predict", help="classify images; one JSON line per image")
    s.add_argument("--task", required=True)
    s.add_argument("images", nargs="+")
    s.add_argument("--weights")
    s.set_defaults(func=_predict)

    s = sub.add_parser("scan", help="classify every image under DIR into a resumable CSV (torchrun shards it)")
    s.add_argument("dir")
    s.add_argument("--task", required=True)
    s.add_argument("--out", required=True, help="results CSV; rows already in it are skipped")
    s.add_argument("--weights", help="model folder (default: the shipped weights for TASK)")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--workers", type=int, default=None, help="decoding processes (default: cores - 1, at most 4)")
    s.set_defaults(func=_scan)

    s = sub.add_parser("bench", help="speed and memory of the shipped models against the performance targets")
    s.add_argument("--json", action="store_true", help="print a JSON document instead of the table")
    s.add_argument("--quick", action="store_true", help="seconds-long smoke run (1-2 repeats, small sizes, no app)")
    s.add_argument("--tasks", nargs="+", help="tasks to measure (default: every task with shipped weights)")
    s.add_argument("--out", help="also write the JSON document to this file")
    s.add_argument("--threads", type=int, help="torch threads (default: the usable CPU cores)")
    s.set_defaults(func=_bench)

    s = sub.add_parser("cv", help="k-fold cross-validation: mean ± std of the test metrics")
    s.add_argument("--config", required=True)
    s.add_argument("--folds", type=int, default=10)
    s.add_argument("--data")
    s.add_argument("--epochs", type=int)
    s.add_argument("--out", default=None)
    s.set_defaults(func=_cv)

    s = sub.add_parser("ablate", help="train variants on the same split and seeds; markdown + JSON table")
    s.add_argument("--config", required=True)
    s.add_argument("--variants", required=True, help="comma-separated registry names, e.g. bamnet-none,bamnet-bam")
    s.add_argument("--seeds", type=int, default=3)
    s.add_argument("--data")
    s.add_argument("--epochs", type=int)
    s.add_argument("--out", default=None)
    s.set_defaults(func=_ablate)

    s = sub.add_parser("hash-password", help="print an INKAPP_EXPERTS entry (name=hash) for a password read from stdin")
    s.add_argument("name", help="the expert's name")
    s.set_defaults(func=_hash_password)

    s = sub.add_parser("serve", help="start the curation app (port from GRADIO_SERVER_PORT, default 7860)")
    s.set_defaults(func=_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError) as err:
        print(f"inkapp {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
