"""Ensembles as one model (issue 15): mean probability through the one scoring path, with and
without the flip view; save/load round trip; Grad-CAM and attention maps from the CAM
member; ``python -m inkapp.training.ensemble`` on real (tiny) runs, then ``inkapp
evaluate`` / ``inkapp predict`` on the ensemble folder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from inkapp.data.preprocess import Preprocessor
from inkapp.inference import Predictor
from inkapp.models import build_model, load_model
from inkapp.models.ensemble import Ensemble, EnsembleError, cam_member_index, save_ensemble
from inkapp.scoring import ScoringSpec, score_canvases

SIZE = 64
CLASSES = ["gongbi", "xieyi"]


def _member(arch: str, seed: int, classes: list[str] = CLASSES) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(seed)
    model = build_model({"arch": arch, "num_classes": len(classes), "pretrained": None, "image_size": SIZE})
    card = {"task": "painting-technique", "domain": "painting", "classes": classes,
            "preprocessing": Preprocessor(SIZE, False, (0.5,) * 3, (0.5,) * 3).to_card(),
            "version": f"member-{seed}", "training": {"train": {"seed": seed, "epochs": 1}}}
    return model.eval(), card


def _canvases(n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    return torch.randint(0, 256, (n, 3, SIZE, SIZE), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("flip", [False, True])
def test_ensemble_probability_is_the_members_mean(flip: bool) -> None:
    members = [_member("smallcnn", s)[0] for s in range(3)]
    ens = Ensemble(members, cam_member=1).eval()
    spec = ScoringSpec((0.5,) * 3, (0.5,) * 3, tta_hflip=flip)
    canvases = _canvases()
    got = score_canvases(ens, canvases, spec)
    each = torch.stack([score_canvases(m, canvases, spec) for m in members])
    assert torch.allclose(got, each.mean(0), atol=1e-6)
    assert not torch.allclose(each[0], each[1], atol=1e-3)  # the members really differ
    x = (canvases.float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        views = [x, x.flip(-1)] if flip else [x]
        by_hand = torch.stack([torch.softmax(m(v), 1) for m in members for v in views]).mean(0)
    assert torch.allclose(got, by_hand, atol=1e-5)


def test_save_load_round_trip_keeps_probabilities_recipes_and_cam_member(tmp_path: Path) -> None:
    pairs = [_member("plain", s) for s in (3, 4)]
    members, cards = [m for m, _ in pairs], [c for _, c in pairs]
    top = {"task": "painting-technique", "domain": "painting", "classes": CLASSES,
           "preprocessing": {**cards[0]["preprocessing"], "tta_hflip": True}, "version": "ens-test"}
    save_ensemble(members, cards, tmp_path / "ens", top, cam_member=1, half=False)
    loaded, card = load_model(tmp_path / "ens")
    assert isinstance(loaded, Ensemble) and loaded.cam_member == 1
    assert [m["seed"] for m in card["members"]] == [3, 4]
    assert card["members"][1]["recipe"] == {"train": {"seed": 4, "epochs": 1}}
    assert card["model"]["arch"] == "ensemble" and card["model"]["num_classes"] == 2
    spec = ScoringSpec.from_card(card)
    assert spec.tta_hflip is True
    canvases = _canvases()
    assert torch.allclose(score_canvases(loaded, canvases, spec),
                          score_canvases(Ensemble(members, 1).eval(), canvases, spec), atol=1e-6)
    save_ensemble(members, cards, tmp_path / "half", top, cam_member=1, half=True)
    for i in range(2):
        f = tmp_path / "half" / "members" / str(i) / "model.safetensors"
        assert f.stat().st_size < (tmp_path / "ens" / "members" / str(i) / "model.safetensors").stat().st_size
    half, _ = load_model(tmp_path / "half")
    assert torch.allclose(score_canvases(half, canvases, spec), score_canvases(loaded, canvases, spec), atol=2e-2)


def test_members_with_other_classes_are_refused(tmp_path: Path) -> None:
    a, ca = _member("smallcnn", 0)
    b, cb = _member("smallcnn", 1, classes=["gongbi", "other"])
    with pytest.raises(EnsembleError, match="member 1 has classes"):
        save_ensemble([a, b], [ca, cb], tmp_path / "bad", {**ca}, cam_member=0)
    card = json.loads(json.dumps(ca))
    save_ensemble([a, _member("smallcnn", 2)[0]], [ca, {**ca, "version": "m2"}], tmp_path / "ok", card, cam_member=0)
    doc = json.loads((tmp_path / "ok" / "card.json").read_text())
    doc["members"][1]["folder"] = "../../elsewhere"
    (tmp_path / "ok" / "card.json").write_text(json.dumps(doc))
    with pytest.raises(EnsembleError, match="outside the model folder"):
        load_model(tmp_path / "ok")


def test_cam_member_is_the_one_that_agrees_best() -> None:
    p0 = [0.8, 0.3, 0.7, 0.4]    # P(class 0) per image; agrees with the mean everywhere, closest to it
    p1 = [0.45, 0.55, 0.45, 0.4]  # disagrees with the mean on three of four images
    p2 = [0.9, 0.2, 0.6, 0.3]    # agrees everywhere too, but further from the mean (KL)
    probs = np.stack([np.stack([p, 1 - np.array(p)], 1) for p in (p0, p1, p2)])
    assert probs.mean(0).argmax(1).tolist() == [0, 1, 0, 1]
    assert cam_member_index(probs) == 0
    assert cam_member_index(probs[[1, 2]]) == 1  # of p1 and p2 alone, p2 agrees with their mean more often
    with pytest.raises(EnsembleError, match="k×N×K"):
        cam_member_index(np.zeros((3, 4)))


def test_grad_cam_and_attention_maps_come_from_the_cam_member(tmp_path: Path) -> None:
    pairs = [_member("inkfusion", s) for s in (5, 6)]
    top = {"task": "painting-technique", "domain": "painting", "classes": CLASSES,
           "preprocessing": {**pairs[0][1]["preprocessing"], "tta_hflip": True}, "version": "ens-cam"}
    save_ensemble([m for m, _ in pairs], [c for _, c in pairs], tmp_path / "ens", top, cam_member=1, half=False)
    predictor = Predictor.from_folder(tmp_path / "ens", device="cpu")
    ens = predictor.model
    assert ens.cam_target_layer() is ens.members[1].cam_target_layer()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 50, 3), dtype=np.uint8))
    analysis = predictor.analyse(image)
    assert analysis.cam.shape == (90, 50) and float(analysis.cam.max()) > 0
    assert set(analysis.attention) <= {i.name for i in type(ens.members[1]).attention_info}
    assert analysis.attention, "the inkfusion member's attention maps are shown"
    canvas = predictor.preprocessor.canvas(image)[0][None]
    assert analysis.prediction.probabilities == pytest.approx(
        dict(zip(CLASSES, predictor.probabilities(canvas)[0].tolist())), abs=1e-5)


def test_ensemble_command_then_evaluate_and_predict(tmp_path: Path, labelled_data: Path,
                                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """In-process (``inkapp.cli.main``): the same code paths as the console commands,
    without paying the interpreter start five times."""
    from inkapp.cli import main as inkapp_main
    from inkapp.training.ensemble import main as ensemble_main

    monkeypatch.setenv("INKAPP_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "data"
    for cls in ("ouyang_xun", "zhao_mengfu"):
        (data / cls).mkdir(parents=True)
        for f in sorted((labelled_data / "calligrapher" / cls).iterdir())[:12]:
            shutil.copy(f, data / cls / f.name)
    cfg = {"task": "calligrapher", "domain": "calligraphy", "data": str(data),
           "model": {"arch": "smallcnn", "image_size": 64, "grayscale": True},
           "train": {"epochs": 1, "batch_size": 8, "lr": 0.003, "scheduler": "none", "augment": "none",
                     "early_stop_patience": 0}, "split": {"grouping": "loose-dhash"}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    runs = [str(tmp_path / f"run{seed}") for seed in (0, 1)]
    for seed, out in enumerate(runs):
        assert inkapp_main(["train", "--config", str(tmp_path / "tiny.yaml"), "--out", out, "--seed", str(seed)]) == 0
    ens = tmp_path / "ens"
    assert ensemble_main([*runs, str(ens)]) == 0
    card = json.loads((ens / "card.json").read_text())
    assert [m["seed"] for m in card["members"]] == [0, 1] and card["preprocessing"]["tta_hflip"] is True
    assert card["storage_check"]["predictions_changed_fp16"] == 0
    metrics = json.loads((ens / "metrics.json").read_text())
    assert [m["seed"] for m in metrics["members"]] == [0, 1]
    assert metrics["ensemble"]["test"]["n"] == card["metrics"]["n"] == len(json.loads((ens / "split.json").read_text())["test"])
    readme = (ens / "README.md").read_text()  # the model card names every member's seed, recipe and figures
    assert "seed ensemble" in readme and "--ensemble" in readme
    assert readme.count("| `members/") == 2 and f"**{card['metrics']['accuracy']:.4f}**" in readme
    capsys.readouterr()
    assert inkapp_main(["evaluate", "--task", "calligrapher", "--data", str(data), "--weights", str(ens)]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 24
    one = sorted((data / "zhao_mengfu").iterdir())[0]
    assert inkapp_main(["predict", "--task", "calligrapher", "--weights", str(ens), str(one)]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert line["label"] in ("ouyang_xun", "zhao_mengfu") and sum(line["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    with pytest.raises(SystemExit):
        ensemble_main([runs[0], str(tmp_path / "one")])
    assert "at least two run folders" in capsys.readouterr().err
