"""The shipped models keep their promises: the card's test figures are what a fresh
evaluation of the stored weights gives on the stored test split, the test split shares
no near-duplicate with the training split, and the files stay small."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from inkapp.data.splits import DEFAULT_THRESHOLD, phashes
from inkapp.tasks import TASKS
from inkapp.training.evaluate import evaluate_folder

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights"
SHIPPED = sorted(p.name for p in WEIGHTS.iterdir() if (p / "card.json").is_file())
#: Tasks that also ship a seed ensemble (weights/<task>/ensemble, for ``inkapp scan --ensemble``).
ENSEMBLES = sorted(t for t in SHIPPED if (WEIGHTS / t / "ensemble" / "card.json").is_file())


def _split(task: str) -> dict[str, list[dict[str, str]]]:
    split = json.loads((WEIGHTS / task / "split.json").read_text())
    for part in split.values():
        for entry in part:
            entry["path"] = str((ROOT / entry["path"]).resolve())
    return split


def _needs_images(split: dict[str, list[dict[str, str]]]) -> None:
    missing = [e["path"] for part in split.values() for e in part if not Path(e["path"]).is_file()]
    if missing:
        pytest.skip(f"{len(missing)} split images not found (first: {missing[0]}); ../shared/data is absent")


def test_every_task_ships_a_model() -> None:
    assert set(TASKS) <= set(SHIPPED)


@pytest.mark.parametrize("task", SHIPPED)
def test_shipped_files_are_complete_and_small(task: str) -> None:
    folder = WEIGHTS / task
    for f in ("model.safetensors", "card.json", "README.md", "split.json", "confusion_normalised.png", "curves.png"):
        assert (folder / f).is_file(), f
    assert (folder / "model.safetensors").stat().st_size < 10 * 2**20
    card = json.loads((folder / "card.json").read_text())
    check = card["storage_check"]
    assert check["predictions_changed_fp16"] == 0 or check["stored_as"] == "float32"


def test_calligrapher_card_maps_classes_to_dynasties() -> None:
    card = json.loads((WEIGHTS / "calligrapher" / "card.json").read_text())
    assert card["dynasty"] == {"ouyang_xun": "Tang", "yan_zhenqing": "Tang", "liu_gongquan": "Tang",
                               "zhao_mengfu": "Yuan"}
    assert set(card["dynasty"]) == set(card["classes"])


@pytest.mark.slow
@pytest.mark.parametrize("task", SHIPPED)
def test_test_split_has_no_near_duplicate_of_a_training_image(task: str) -> None:
    split = _split(task)
    _needs_images(split)
    train = [h for h in phashes([e["path"] for e in split["train"]]) if h is not None]
    test = [h for h in phashes([e["path"] for e in split["test"]]) if h is not None]
    closest = min(bin(a ^ b).count("1") for a in test for b in train)
    assert closest > DEFAULT_THRESHOLD, f"a test image is {closest} bits from a training image"


@pytest.mark.parametrize("task", ENSEMBLES)
def test_shipped_ensemble_files_are_complete_small_and_share_the_single_models_split(task: str) -> None:
    folder = WEIGHTS / task / "ensemble"
    for f in ("card.json", "README.md", "split.json", "metrics.json"):
        assert (folder / f).is_file(), f
    card = json.loads((folder / "card.json").read_text())
    assert len(card["members"]) >= 3 and card["task"] == task
    for member in card["members"]:
        assert (folder / member["folder"] / "model.safetensors").stat().st_size < 10 * 2**20
        assert member["seed"] is not None and member["recipe"]  # each member's recipe and seed are recorded
    assert card["storage_check"]["predictions_changed_fp16"] == 0
    single = json.loads((WEIGHTS / task / "split.json").read_text())
    assert json.loads((folder / "split.json").read_text()) == single  # one split: the figures compare


def _test_tree(split: dict[str, list[dict[str, str]]], root: Path) -> Path:
    """An ImageFolder tree of the test split (symlinks), as `inkapp evaluate` reads."""
    for i, e in enumerate(split["test"]):
        (root / e["label"]).mkdir(exist_ok=True)
        (root / e["label"] / f"{i:05d}{Path(e['path']).suffix}").symlink_to(e["path"])
    return root


@pytest.mark.slow
@pytest.mark.parametrize("folder", [t for t in SHIPPED if t in TASKS] + [f"{t}/ensemble" for t in ENSEMBLES])
def test_card_figures_reproduce_on_the_stored_test_split(folder: str, tmp_path: Path) -> None:
    task = folder.split("/")[0]
    split = _split(task)
    _needs_images(split)
    card = json.loads((WEIGHTS / folder / "card.json").read_text())
    result = evaluate_folder(WEIGHTS / folder, _test_tree(split, tmp_path), task)
    assert result["n"] == card["metrics"]["n"] == len(split["test"])
    assert result["accuracy"] == pytest.approx(card["metrics"]["accuracy"], abs=1e-9)
    assert result["macro_f1"] == pytest.approx(card["metrics"]["macro_f1"], abs=1e-9)
    assert result["confusion_matrix"] == card["metrics"]["confusion_matrix"]
