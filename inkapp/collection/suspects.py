"""Suspect labels: out-of-fold probabilities + confident learning (cleanlab).

Recipe (a CPU-sized stand-in for k-fold retraining of the shipped model, which costs
hours per task here): every labelled image of the task's split file (train, val and
test parts) is embedded once by the label-independent
:class:`~inkapp.collection.embed.GenericEmbedder`; a multinomial logistic-regression
probe is trained on k−1 folds and predicts the held-out fold, for k stratified group
folds (near-duplicate groups by perceptual hash kept in one fold, as ``inkapp cv``
does) — so every probability is out of fold. ``cleanlab.filter.find_label_issues``
(``prune_by_noise_rate``) then picks the likely mislabelled images and
``cleanlab.rank.get_label_quality_scores`` (``self_confidence``: the out-of-fold
probability of the given label) orders them; lower score = more suspect.

Results are cached as JSON (``docs/results/suspects-<task>.json`` for the shipped
splits). The review queue is that ranking minus images an expert already decided: a
correction row for the image in the corrections store, either a new label (note
``suspect:relabelled``) or the given label kept (note ``suspect:kept``).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from sklearn.linear_model import LogisticRegression

from inkapp.data.images import sha256_file
from inkapp.data.splits import fold_assignment
from inkapp.paths import data_dir as default_data_dir
from inkapp.store.corrections import CorrectionStore

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "docs" / "results"
NOTE_KEPT = "suspect:kept"
NOTE_RELABELLED = "suspect:relabelled"
PROBE_C = 1.0  # inverse L2 strength of the logistic-regression probe (sklearn's default)


@dataclass(frozen=True)
class Suspect:
    """One likely mislabelled image.

    ``image_path`` — as in the split file (relative to the repository root, or absolute);
    ``given_label`` — its label in the data; ``predicted_label`` — arg-max of the
    out-of-fold probabilities; ``quality`` — out-of-fold probability of the given label
    (cleanlab self-confidence, in [0, 1], lower = more suspect);
    ``probabilities`` — class -> out-of-fold probability.
    """

    rank: int
    image_path: str
    sha256: str
    given_label: str
    predicted_label: str
    quality: float
    probabilities: dict[str, float]

    def absolute_path(self) -> Path:
        """Where to read the image: ``image_path`` resolved against the repository root."""
        path = Path(self.image_path)
        return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, groups: Sequence[int], folds: int = 5,
                              seed: int = 0) -> np.ndarray:
    """N×D features, N integer labels (0..K−1), N group ids -> N×K out-of-fold
    probabilities of a logistic-regression probe over stratified group folds."""
    labels = np.asarray(labels)
    k = int(labels.max()) + 1
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if k < 2:
        raise ValueError("out-of-fold probabilities need at least 2 classes")
    if np.bincount(labels, minlength=k).min() < folds:
        raise ValueError(f"every class needs at least {folds} images for {folds} folds")
    assignment = np.asarray(fold_assignment([str(v) for v in labels], list(groups), folds, seed))
    out = np.zeros((len(labels), k), np.float64)
    for f in range(folds):
        held = assignment == f
        probe = LogisticRegression(C=PROBE_C, max_iter=3000)
        probe.fit(features[~held], labels[~held])
        out[np.ix_(held, probe.classes_)] = probe.predict_proba(features[held])
    return out


def rank_label_issues(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab: (indices of the label issues, most suspect first; N label-quality scores)."""
    issues = find_label_issues(labels=labels, pred_probs=probabilities, filter_by="prune_by_noise_rate",
                               return_indices_ranked_by="self_confidence")
    scores = get_label_quality_scores(labels=labels, pred_probs=probabilities, method="self_confidence")
    return np.asarray(issues, dtype=np.int64), np.asarray(scores)


def suspects_from(paths: Sequence[str], labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[str],
                  sha256s: Sequence[str]) -> list[Suspect]:
    """The ranked :class:`Suspect` list for out-of-fold ``probabilities`` (N×K)."""
    issues, scores = rank_label_issues(labels, probabilities)
    return [Suspect(rank=r + 1, image_path=str(paths[i]), sha256=sha256s[i], given_label=classes[labels[i]],
                    predicted_label=classes[int(np.argmax(probabilities[i]))], quality=round(float(scores[i]), 6),
                    probabilities={c: round(float(p), 6) for c, p in zip(classes, probabilities[i])})
            for r, i in enumerate(issues)]


def suspects_file(task: str) -> Path:
    """Default cache of ``task``'s suspect ranking: ``docs/results/suspects-<task>.json``."""
    return RESULTS_DIR / f"suspects-{task}.json"


def compute_suspects(task: str, split_file: str | Path, out: str | Path, folds: int = 5, seed: int = 0,
                     progress: bool = False) -> dict:
    """Embed every image of ``split_file`` (paths relative to the repository root),
    rank label issues, and write the result document to ``out`` (atomically); returns it.
    Keys: task, recipe, classes, n_images, n_suspects, oof_accuracy, created, suspects."""
    from inkapp.collection.embed import GenericEmbedder
    from inkapp.data.dataset import decode_canvases
    from inkapp.data.splits import phashes, near_duplicate_groups

    split = json.loads(Path(split_file).read_text())
    rows = [r for part in ("train", "val", "test") for r in split.get(part, [])]
    if not rows:
        raise ValueError(f"{split_file}: no images listed")
    classes = sorted({r["label"] for r in rows})
    paths = [str(REPO_ROOT / r["path"]) if not Path(r["path"]).is_absolute() else r["path"] for r in rows]
    canvases, errors = decode_canvases(paths, GenericEmbedder.size, False, progress)
    keep = [i for i, e in enumerate(errors) if not e]
    features = GenericEmbedder().embed_canvases(canvases[keep])
    labels = np.array([classes.index(rows[i]["label"]) for i in keep])
    groups = near_duplicate_groups(phashes([paths[i] for i in keep]))
    probs = out_of_fold_probabilities(features, labels, groups, folds, seed)
    suspects = suspects_from([rows[i]["path"] for i in keep], labels, probs, classes,
                             [sha256_file(paths[i]) for i in keep])
    doc = {"task": task, "classes": classes,
           "recipe": f"{folds}-fold stratified group CV; logistic-regression probe (C={PROBE_C}) on ImageNet "
                     f"EfficientNet-Lite0 pooled features; cleanlab find_label_issues(prune_by_noise_rate), "
                     f"ranked by self_confidence",
           "split_file": str(split_file), "n_images": len(keep), "unreadable": len(rows) - len(keep),
           "n_suspects": len(suspects), "oof_accuracy": round(float((probs.argmax(1) == labels).mean()), 4),
           "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "suspects": [asdict(s) for s in suspects]}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False))
    os.replace(tmp, out)
    return doc


def load_suspects(path: str | Path) -> list[Suspect]:
    """The ranked suspects of a result document written by :func:`compute_suspects`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no suspect ranking; compute it with `inkapp suspects --task T --recompute`")
    return [Suspect(**s) for s in json.loads(path.read_text())["suspects"]]


def suspect_queue(task: str, data_dir: str | Path | None = None, path: str | Path | None = None) -> list[Suspect]:
    """The suspects of ``task`` still awaiting an expert, most suspect first: the cached
    ranking minus images with a correction in effect for ``task``."""
    suspects = load_suspects(path if path is not None else suspects_file(task))
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if not (root / "corrections.csv").exists():
        return suspects
    decided = {r["image_sha256"] for r in CorrectionStore(root).active() if r["task"] == task}
    return [s for s in suspects if s.sha256 not in decided]


def decide_suspect(suspect: Suspect, task: str, label: str, expert: str, classes: Sequence[str],
                   model_version: str = "", data_dir: str | Path | None = None) -> dict[str, str]:
    """Record an expert's decision on a suspect as a correction row: ``label`` equal to
    the given label keeps it (note ``suspect:kept``), another label relabels it (note
    ``suspect:relabelled``). The image is stored in the data directory (the corrections
    store keeps its own copy). ``predicted_label``/``confidence`` are the probe's
    out-of-fold view. Returns the row written; raises CorrectionError for a bad label."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    store = CorrectionStore(root)
    sha, rel = store.store_image(suspect.absolute_path().read_bytes())
    if sha != suspect.sha256:
        raise ValueError(f"{suspect.image_path} changed since the ranking was computed (sha256 differs)")
    note = NOTE_KEPT if label == suspect.given_label else NOTE_RELABELLED
    return store.add(task, sha, rel, suspect.predicted_label, suspect.probabilities[suspect.predicted_label], label,
                     expert, note, model_version, classes)
