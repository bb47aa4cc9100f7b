"""The layout's promises: Gradio and plotly only under ``inkapp/ui``, nothing else imports
``inkapp.ui``; one scoring path (the app's probabilities are ``inkapp evaluate``'s, flip
views included); a non-editable install trains and retrains from its packaged configs."""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inkapp.curation.analysis import analyse_image
from inkapp.curation.hub import ModelHub
from inkapp.scoring import ScoringSpec, score_canvases
from inkapp.training.evaluate import evaluate_probabilities

from conftest import make_random_model

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "inkapp"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative: resolve against the file's package
                parts = path.relative_to(REPO).with_suffix("").parts[:-node.level]
                base = ".".join([*parts, node.module])
            names.add(base)
    return names


#: The one module outside ``inkapp/ui`` that may import it: ``inkapp serve`` starts the app.
UI_LAUNCHERS = {"inkapp/cli.py"}


def test_gradio_only_in_ui_curation_browser_free_and_nothing_imports_ui() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        room = path.relative_to(PACKAGE).parts[0]
        where = str(path.relative_to(REPO))
        for name in _imports(path):
            root = name.split(".")[0]
            if room != "ui" and root == "gradio":
                offenders.append(f"{where} imports {name}")
            if room == "curation" and root == "plotly":
                offenders.append(f"{where} imports {name} (curation/ is browser-free)")
            if room != "ui" and name.startswith("inkapp.ui") and where not in UI_LAUNCHERS:
                offenders.append(f"{where} imports {name}")
    assert offenders == []


def _painting(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (90, 160, 3), dtype=np.uint8)
    arr[:, :40] = 20  # a dark left band: mirroring the image changes what the model sees
    return Image.fromarray(arr)


def test_app_probabilities_equal_evaluate_with_flip_views(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = "painting-technique"
    weights = tmp_path / "weights"
    folder = make_random_model(weights / task, task, seed=3)
    make_random_model(weights / "painting-subject", "painting-subject")
    card = json.loads((folder / "card.json").read_text())
    card["preprocessing"]["tta_hflip"] = True
    (folder / "card.json").write_text(json.dumps(card))
    data = tmp_path / "data"
    for i, label in enumerate(["gongbi", "xieyi", "gongbi"]):
        (data / label).mkdir(parents=True, exist_ok=True)
        _painting(i).save(data / label / f"{i}.png")
    monkeypatch.setenv("INKAPP_WEIGHTS_DIR", str(weights))

    _, samples, evaluated = evaluate_probabilities(folder, data, task)
    hub = ModelHub(tmp_path / "app-data", tasks=["painting-subject", task], device="cpu")
    predictor = hub.predictor(task)
    one_view = ScoringSpec(predictor.scoring.mean, predictor.scoring.std, tta_hflip=False)
    for sample, expected in zip(samples, evaluated):
        view = next(v for v in analyse_image(hub, Path(sample.path).read_bytes(), "painting").tasks if v.task == task)
        shown = np.array([view.probabilities[c] for c in card["classes"]])
        np.testing.assert_allclose(shown, expected, atol=1e-5)
        canvas = predictor.preprocessor.canvas(Image.open(sample.path))[0][None]
        single = score_canvases(predictor.model, canvas, one_view, torch.device("cpu"))[0].numpy()
        assert np.abs(single - expected).max() > 1e-4  # the flip view really counts


@pytest.mark.slow
def test_non_editable_install_trains_and_retrains(tmp_path: Path) -> None:
    """``pip install .`` (not editable) into a fresh venv; the dependencies come from the
    test environment's site-packages through a .pth file (no download)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(PACKAGE, src / "inkapp", ignore=shutil.ignore_patterns("__pycache__"))
    clean = {**os.environ, "PYTHONPATH": ""}  # the new venv must import its own installed copy
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True, env=clean).stdout.strip()
    deps = [p for p in sys.path if p.endswith("site-packages")]
    Path(site, "test-deps.pth").write_text("\n".join(deps) + "\n")
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(src)], check=True, cwd=tmp_path)
    wheel = next(dist.glob("inkapp-*.whl"))
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, cwd=tmp_path,
                   env=clean)
    where = subprocess.run([str(python), "-c", "import inkapp; print(inkapp.__file__)"], capture_output=True,
                           text=True, check=True, cwd=tmp_path, env=clean).stdout.strip()
    assert where.startswith(site), where

    root = tmp_path / "shared-data"
    for label in ("gongbi", "xieyi"):
        for i in range(10):
            (root / "painting-technique" / label).mkdir(parents=True, exist_ok=True)
            _painting(i + (50 if label == "xieyi" else 0)).save(root / "painting-technique" / label / f"{i}.png")
    env = {**os.environ, "INKAPP_TRAIN_DATA": str(root), "INKAPP_CACHE_DIR": str(tmp_path / "cache"),
           "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    run = tmp_path / "run"
    subprocess.run([str(env_dir / "bin" / "inkapp"), "train", "--config", "painting-technique", "--epochs", "1",
                    "--out", str(run)], check=True, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL)
    assert json.loads((run / "card.json").read_text())["task"] == "painting-technique"

    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from inkapp.curation.retrain import RetrainManager\n"
        "m = RetrainManager(Path(sys.argv[1]), extra_args=('--epochs', '1'))\n"
        "job = m.start('painting-technique', None)\n"
        "job.process.wait()\n"
        "p = job.progress()\n"
        "print(p.state, job.candidate)\n"
    )
    out = subprocess.run([str(python), "-c", script, str(tmp_path / "app-data")], capture_output=True, text=True,
                         check=True, cwd=tmp_path, env=env).stdout.split()
    assert out[0] == "finished", out
    assert json.loads((Path(out[1]) / "card.json").read_text())["task"] == "painting-technique"
