"""The ``inkapp`` command line. Heavy imports happen inside each subcommand so
``inkapp --help`` stays fast."""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
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
    from .iiif.annotations import annotation_page, write_annotation_page
    from .iiif.classify import active_corrections, classify_sources, prediction_annotations
    from .inference import Predictor
    from .paths import data_dir

    predictor = Predictor.from_folder(_model_folder(args.task, args.weights))
    failed: list[str] = []

    def report(source: str, message: str) -> None:  # messages name the file or URL that failed
        print(message, file=sys.stderr)
        failed.append(source)

    results = []
    for r in classify_sources(predictor, args.images, report):
        p, item = r.prediction, r.item
        where = {"image": item.source} if item.target.startswith("file:") else {
            "image": item.target_with_region, "source": item.source, "name": item.name}
        print(json.dumps({**where, "task": predictor.task, "label": p.label, "confidence": round(p.confidence, 6),
                          "uncertain": p.uncertain, "answer_set": list(p.answer_set),
                          "probabilities": {k: round(v, 6) for k, v in p.probabilities.items()}}, ensure_ascii=False),
              flush=True)
        results.append(r)
    if args.annotations:
        page = annotation_page(prediction_annotations(results, predictor, active_corrections(data_dir())))
        write_annotation_page(page, args.annotations)
        print(f"predict: {len(page['items'])} annotations written to {args.annotations}", file=sys.stderr)
    return 1 if failed else 0


def _attribute(args: argparse.Namespace) -> int:
    from .data.images import ImageError, load_image
    from .inference import Predictor
    from .pages.attribute import attribute_page
    from .paths import shipped_weights

    calligrapher = Predictor.from_folder(_model_folder("calligrapher", args.weights))
    script = Predictor.from_folder(shipped_weights("calligraphy-script"))
    status = 0
    for path in args.images:
        try:
            result = attribute_page(load_image(path), calligrapher, script)
        except (ImageError, OSError) as err:
            print(f"{path}: {err}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(json.dumps({"image": path, **result.to_json()}, ensure_ascii=False), flush=True)
            continue
        verdict = result.attribution or "no confident attribution"
        shown = ", ".join(f"{k} {v:.3f}" for k, v in sorted(result.probabilities.items(), key=lambda kv: -kv[1]))
        print(f"{path}: {verdict} ({result.reason}: {result.message}); {len(result.characters)} of "
              f"{result.found} characters classified, {result.layout}; page: {shown or '-'}")
        for i, c in enumerate(result.characters, start=1):
            print(f"  {i:3d} box {c.box.as_list()} {c.label} {c.confidence:.3f}")
    return status


def _scan(args: argparse.Namespace) -> int:
    from .scan import run_scan

    summary = run_scan(args.dir, args.out, _scan_folder(args), args.batch_size, args.workers, args.batch_pixels)
    print(f"scan: {summary.scanned} images classified ({summary.errors} errors), {summary.skipped} already in "
          f"{args.out}, {summary.seconds:.1f} s", file=sys.stderr)
    if args.duplicates and int(os.environ.get("RANK", "0")) == 0:
        _scan_duplicates(args)
    return 0


def _scan_folder(args: argparse.Namespace) -> Path:
    """The model folder ``inkapp scan`` uses: ``--weights``, else the shipped ensemble with
    ``--ensemble``, else the shipped single model."""
    from .paths import shipped_ensemble

    if args.ensemble and args.weights:
        raise ValueError("give --weights or --ensemble, not both")
    if not args.ensemble:
        return _model_folder(args.task, args.weights)
    folder = shipped_ensemble(args.task)
    if not (folder / "card.json").is_file():
        raise ValueError(f"no ensemble is shipped for {args.task} ({folder} has no card.json)")
    return folder


def _scan_duplicates(args: argparse.Namespace) -> None:
    """Index the scanned images in the task's collection index; one JSON line per near-duplicate pair."""
    from .collection.duplicates import duplicate_pairs, index_scan, threshold_for
    from .inference import Predictor
    from .scan import batch_for

    predictor = Predictor.from_folder(_scan_folder(args))
    batch = batch_for(predictor.preprocessor.size, args.batch_pixels, args.batch_size, predictor.device)
    shas, errors = index_scan(args.dir, args.out, args.task, predictor=predictor, batch_size=batch)
    for message in errors:
        print(message, file=sys.stderr)
    threshold = threshold_for(args.task) if args.threshold is None else args.threshold
    pairs = duplicate_pairs(args.task, among=shas, threshold=threshold)
    for pair in pairs:
        print(json.dumps(pair.to_dict(), ensure_ascii=False), flush=True)
    flagged = sum(p.labels_disagree for p in pairs)
    print(f"scan: {len(shas)} images indexed, {len(pairs)} near-duplicate pairs at similarity >= {threshold} "
          f"({flagged} with disagreeing labels)", file=sys.stderr)


def _similar(args: argparse.Namespace) -> int:
    from .collection.similar import collection_index, similar_works
    from .inference import Predictor
    from .tasks import TASKS

    tasks = [args.task] if args.task else [t for t in TASKS if len(collection_index(t))]
    if not tasks:
        raise ValueError("the collection index is empty; index images with `inkapp scan DIR --task T --out CSV "
                         "--duplicates`")
    results = {}
    for task in tasks:
        predictor = Predictor.from_folder(_model_folder(task, args.weights if args.task else None))
        results[task] = [asdict(n) for n in similar_works(args.image, task, args.k, predictor=predictor)]
    if args.json:
        print(json.dumps({"image": args.image, "similar": results}, ensure_ascii=False, indent=1))
        return 0
    for task, rows in results.items():
        print(f"{task}: {len(rows)} similar works")
        for i, n in enumerate(rows, 1):
            print(f"  {i}. {n['similarity']:.4f}  {n['label']} ({n['label_source']})  {n['image_path']}")
    return 0


def _suspects(args: argparse.Namespace) -> int:
    from .collection.suspects import compute_suspects, load_suspects, suspect_queue, suspects_file

    path = Path(args.file) if args.file else suspects_file(args.task)
    if args.recompute:
        split = Path(args.split) if args.split else _model_folder(args.task, None) / "split.json"
        doc = compute_suspects(args.task, split, path, args.folds)
        print(f"suspects: {doc['n_suspects']} of {doc['n_images']} images, out-of-fold accuracy "
              f"{doc['oof_accuracy']:.3f}, written to {path}", file=sys.stderr)
    rows = suspect_queue(args.task, path=path) if args.pending else load_suspects(path)
    rows = rows[:args.top] if args.top else rows
    if args.json:
        print(json.dumps([asdict(r) for r in rows], ensure_ascii=False, indent=1))
        return 0
    print(f"{'rank':>4} {'quality':>7}  {'given':16} {'model view':16} image")
    for r in rows:
        print(f"{r.rank:>4} {r.quality:>7.3f}  {r.given_label:16} {r.predicted_label:16} {r.image_path}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .data.images import sha256_bytes
    from .iiif import open_source
    from .inference import Predictor
    from .paths import data_dir, shipped_weights
    from .record import build_record, collection_similar, image_corrections, write_record
    from .record.content import DISPLAY_MAX_SIDE
    from .tasks import TASKS_BY_DOMAIN

    items = open_source(args.image, DISPLAY_MAX_SIDE)
    if len(items) != 1:
        raise ValueError(f"{args.image} has {len(items)} images; a record is for one work (give one canvas's image)")
    item = items[0]
    if args.weights and len(args.task or []) != 1:
        raise ValueError("--weights needs exactly one --task")
    if args.task:
        tasks = args.task
    else:  # the routing model decides painting or calligraphy, as in the app
        domain = Predictor.from_folder(shipped_weights("domain")).predict([item.image])[0].label
        tasks = TASKS_BY_DOMAIN[domain]
    predictors = [Predictor.from_folder(_model_folder(t, args.weights)) for t in tasks]
    record = build_record(item.data, item.name, predictors, image=item.image,
                          corrections=image_corrections(data_dir(), sha256_bytes(item.data)),
                          similar=collection_similar(item.data, predictors, args.similar, data_dir())
                          if args.similar and data_dir().is_dir() else None)
    out = write_record(record, args.out)
    print(f"report: {out} ({', '.join(f'{r.task} {r.label} {r.confidence:.3f}' for r in record.results)})",
          file=sys.stderr)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .dev.bench import run_bench

    return run_bench(tasks=args.tasks, quick=args.quick, as_json=args.json, out=args.out, threads=args.threads,
                     runs=args.runs)


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

    s = sub.add_parser("predict", help="classify images; one JSON line per image (IIIF: per canvas)")
    s.add_argument("--task", required=True)
    s.add_argument("images", nargs="+", metavar="SOURCE",
                   help="image file, IIIF Image API URL (service, info.json or image request; optional "
                        "#xywh=x,y,w,h) or IIIF Presentation 3 manifest URL")
    s.add_argument("--weights")
    s.add_argument("--annotations", metavar="FILE",
                   help="also write the predictions, and stored corrections of the same images, as a W3C Web "
                        "Annotation AnnotationPage (JSON-LD)")
    s.set_defaults(func=_predict)

    s = sub.add_parser("attribute", help="find the characters of calligraphy pages and attribute the master by "
                                         "their votes (or abstain); per image: characters, probabilities, "
                                         "attribution, reason")
    s.add_argument("images", nargs="+", metavar="IMAGE")
    s.add_argument("--weights", help="calligrapher model folder (default: the shipped weights)")
    s.add_argument("--json", action="store_true", help="one JSON object per image instead of text")
    s.set_defaults(func=_attribute)

    s = sub.add_parser("scan", help="classify every image under DIR into a resumable CSV (torchrun shards it)")
    s.add_argument("dir")
    s.add_argument("--task", required=True)
    s.add_argument("--out", required=True, help="results CSV; rows already in it are skipped")
    s.add_argument("--weights", help="model folder (default: the shipped weights for TASK)")
    s.add_argument("--ensemble", action="store_true",
                   help="use the task's shipped seed ensemble (weights/TASK/ensemble): better figures, "
                        "several forward passes per image")
    s.add_argument("--batch-size", type=int, default=None,
                   help="at most this many images per batch (default: as many as --batch-pixels allows)")
    s.add_argument("--batch-pixels", type=int, default=None,
                   help="model-input pixels per batch, which bounds memory at every input size (default on CPU "
                        "2**18: 4 images at 256 px, 1 at 512 px; on CUDA 2**24: 64 images at 512 px)")
    s.add_argument("--workers", type=int, default=None,
                   help="decoding processes (default: every core on CUDA; cores - 1, at most 4, on CPU)")
    s.add_argument("--duplicates", action="store_true",
                   help="also add the images to the task's collection index (data directory) and print near-duplicate "
                        "pairs as JSON lines")
    s.add_argument("--threshold", type=float, help="cosine similarity of a near-duplicate pair (default: the task domain's, "
                                                 "0.85 painting, 0.95 calligraphy)")
    s.set_defaults(func=_scan)

    s = sub.add_parser("similar", help="the most similar works in the collection index (per task)")
    s.add_argument("image")
    s.add_argument("--k", type=int, default=5)
    s.add_argument("--task", help="search only this task's index (default: every indexed task)")
    s.add_argument("--weights", help="model folder for --task (default: the shipped weights)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_similar)

    s = sub.add_parser("suspects", help="likely mislabelled images of a task (out-of-fold probe + cleanlab)")
    s.add_argument("--task", required=True)
    s.add_argument("--json", action="store_true")
    s.add_argument("--top", type=int, default=0, help="print only the first N (default: all)")
    s.add_argument("--pending", action="store_true", help="leave out images an expert already decided")
    s.add_argument("--recompute", action="store_true", help="recompute the ranking (minutes) and cache it")
    s.add_argument("--split", help="split.json listing the images (default: the shipped model's)")
    s.add_argument("--folds", type=int, default=5)
    s.add_argument("--file", help="ranking cache (default docs/results/suspects-TASK.json)")
    s.set_defaults(func=_suspects)

    s = sub.add_parser("report", help="a one-page record of one work (HTML, or PDF when FILE ends in .pdf)")
    s.add_argument("image", metavar="IMAGE", help="image file or IIIF image URL (one work)")
    s.add_argument("--out", required=True, metavar="FILE", help="record file: .html, or .pdf (WeasyPrint)")
    s.add_argument("--task", action="append", help="task to analyse (repeatable; default: the tasks of the domain "
                                                   "the routing model sees)")
    s.add_argument("--weights", help="model folder for a single --task (default: the shipped weights)")
    s.add_argument("--similar", type=int, default=5, metavar="K",
                   help="similar works per task from the collection index (0: leave the section out)")
    s.set_defaults(func=_report)

    s = sub.add_parser("bench", help="speed and memory of the shipped models against the performance targets")
    s.add_argument("--json", action="store_true", help="print a JSON document instead of the table")
    s.add_argument("--quick", action="store_true", help="seconds-long smoke run (1-2 repeats, small sizes, no app)")
    s.add_argument("--tasks", nargs="+", help="tasks to measure (default: every task with shipped weights)")
    s.add_argument("--out", help="also write the JSON document to this file")
    s.add_argument("--threads", type=int, help="torch threads (default: the usable CPU cores)")
    s.add_argument("--runs", type=int, help="timed repetitions per figure (default 10; 1 with --quick)")
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
