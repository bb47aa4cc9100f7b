"""The GPU path (skipped without CUDA; run it whenever a GPU is available).

* Scoring on CUDA runs under float16 autocast (observed: the first convolution's output
  is float16) and its probabilities match the float32 CPU ones within
  :data:`PROB_TOL` (absolute, per class); the labels are the same wherever the CPU's top
  two classes are more than ``2 × PROB_TOL`` apart (closer calls may flip under float16).
* Grad-CAM and the models' attention maps (float32 on both devices; convolutions may use
  TF32 on the GPU) match the CPU's: per map, mean absolute difference ≤ :data:`MAP_MEAN_TOL`
  and maximum ≤ :data:`MAP_MAX_TOL`, maps being in [0, 1].
* ``inkapp scan`` under ``torchrun`` with one process per GPU (two GPUs or more) joins an
  NCCL process group, lists every file exactly once and agrees with a CPU scan within
  :data:`PROB_TOL`.

The shipped models are used (an InkFusionNet and a BamNet), on images from
``../shared/data`` or the generated fallback set.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inkapp.data.images import load_image
from inkapp.inference import Predictor
from inkapp.paths import shipped_weights
from inkapp.scan import scan

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

PROB_TOL = 0.02
MAP_MEAN_TOL = 0.01
MAP_MAX_TOL = 0.1
TASKS = ("painting-subject", "calligrapher")
N_IMAGES = 16
REPO = Path(__file__).resolve().parent.parent


def images_of(root: Path, n: int) -> list[Path]:
    """``n`` image files of an ImageFolder tree, taken round-robin over its classes."""
    per_class = [sorted(p for p in d.iterdir() if p.is_file()) for d in sorted(root.iterdir()) if d.is_dir()]
    out = [files[i] for i in range(n) for files in per_class if i < len(files)]
    return out[:n]


@pytest.fixture(scope="module", params=TASKS)
def pair(request: pytest.FixtureRequest, labelled_data: Path) -> tuple[Predictor, Predictor, list[Path]]:
    """(CUDA predictor, CPU predictor, image files) for one shipped task model."""
    folder = shipped_weights(request.param)
    return (Predictor.from_folder(folder, "cuda"), Predictor.from_folder(folder, "cpu"),
            images_of(labelled_data / request.param, N_IMAGES))


def first_conv(model: nn.Module) -> nn.Module:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def test_fp16_autocast_probabilities_match_fp32(pair: tuple[Predictor, Predictor, list[Path]]) -> None:
    gpu, cpu, files = pair
    canvases = torch.stack([gpu.preprocessor.canvas(load_image(f))[0] for f in files])
    dtypes: list[torch.dtype] = []
    hook = first_conv(gpu.model).register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    try:
        on_gpu = gpu.probabilities(canvases)
    finally:
        hook.remove()
    assert dtypes and set(dtypes) == {torch.float16}, f"the GPU forward ran in {set(dtypes)}, not float16 autocast"
    on_cpu = cpu.probabilities(canvases)
    assert on_gpu.dtype == on_cpu.dtype == torch.float32 and on_gpu.shape == on_cpu.shape == (len(files), len(cpu.classes))
    assert torch.allclose(on_gpu.sum(1), torch.ones(len(files)), atol=1e-4)
    diff = (on_gpu - on_cpu).abs().max().item()
    assert diff <= PROB_TOL, f"float16 probabilities differ from float32 by {diff:.4f}"
    top2 = on_cpu.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2 * PROB_TOL
    assert clear.any()
    assert torch.equal(on_gpu.argmax(1)[clear], on_cpu.argmax(1)[clear])


def test_gradcam_and_attention_maps_match_the_cpu(pair: tuple[Predictor, Predictor, list[Path]]) -> None:
    gpu, cpu, files = pair
    for f in files[:4]:
        image = load_image(f)
        a, b = gpu.analyse(image, "gradcam", map_size=(96, 96)), cpu.analyse(image, "gradcam", map_size=(96, 96))
        assert a.cam_target == b.cam_target and a.prediction.label == b.prediction.label, f.name
        maps = {"gradcam": (a.cam, b.cam), **{k: (a.attention[k], b.attention[k]) for k in b.attention}}
        assert set(a.attention) == set(b.attention) and len(maps) > 1
        for name, (on_gpu, on_cpu) in maps.items():
            assert on_gpu.shape == on_cpu.shape == (96, 96), name
            delta = np.abs(on_gpu - on_cpu)
            assert delta.mean() <= MAP_MEAN_TOL and delta.max() <= MAP_MAX_TOL, (f.name, name, delta.mean(), delta.max())
        for name in b.channel_weights:
            np.testing.assert_allclose(a.channel_weights[name], b.channel_weights[name], atol=MAP_MAX_TOL)


def read_scan(path: Path) -> dict[str, dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return {row["path"]: row for row in csv.DictReader(fh)}


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL with one process per GPU needs two GPUs")
def test_scan_under_torchrun_with_nccl(tmp_path: Path, labelled_data: Path) -> None:
    task = "painting-subject"
    folder = tmp_path / "collection"
    folder.mkdir()
    for i, f in enumerate(images_of(labelled_data / task, 24)):
        (folder / f"{i:03d}{f.suffix}").symlink_to(f)
    out = tmp_path / "gpu.csv"
    n = torch.cuda.device_count()
    env = {**os.environ, "NCCL_DEBUG": "INFO", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                           "-m", "inkapp", "scan", str(folder), "--task", task, "--weights", str(shipped_weights(task)),
                           "--out", str(out), "--workers", "0", "--batch-size", "4"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "NCCL INFO" in proc.stdout + proc.stderr, "no NCCL process group was set up"
    gpu_rows = read_scan(out)
    assert sorted(gpu_rows) == sorted(p.name for p in folder.iterdir())
    assert not list(tmp_path.glob("gpu.csv.part*"))
    cpu_out = tmp_path / "cpu.csv"
    scan(folder, cpu_out, Predictor.from_folder(shipped_weights(task), "cpu"), batch_size=4, workers=0, progress=False)
    cpu_rows = read_scan(cpu_out)
    classes = Predictor.from_folder(shipped_weights(task), "cpu").classes
    for name, row in cpu_rows.items():
        for c in classes:
            assert abs(float(gpu_rows[name][f"p_{c}"]) - float(row[f"p_{c}"])) <= PROB_TOL, (name, c)
