"""Grad-CAM, attention maps, overlays and the Predictor (random-weight models, 128 px)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from inkapp.data.preprocess import Letterbox, Preprocessor, letterbox
from inkapp.explain.cam import CAM_METHODS, class_activation_map
from inkapp.explain.overlay import colorize, crop_to_image, heat_levels, legend_stops, overlay, top_channels
from inkapp.inference import Predictor
from inkapp.models import build_model, save_model

ARCHS = ("inkfusion", "bamnet", "plain", "smallcnn")
CLASSES = ["Tang", "Song", "Yuan"]
SIZE = 128
EXPECTED_ATTENTION = {
    "inkfusion": ({"dpafm_spatial", "gate_channel", "gate_spatial", "alpha_0", "alpha_1"}, {"dpafm_channel"}),
    "bamnet": ({"bam_spatial", "bam_attention"}, {"bam_channel"}),
    "plain": (set(), set()),
    "smallcnn": (set(), set()),
}


def make_folder(folder: Path, arch: str, seed: int = 0, **card_extra: object) -> Path:
    torch.manual_seed(seed)
    model = build_model({"arch": arch, "num_classes": len(CLASSES), "pretrained": None, "image_size": SIZE})
    card = {
        "task": "painting-subject",
        "domain": "painting",
        "classes": CLASSES,
        "preprocessing": Preprocessor(SIZE, False, (0.5,) * 3, (0.5,) * 3).to_card(),
        "version": "test",
        **card_extra,
    }
    return save_model(model, folder, card)


@pytest.fixture(scope="module")
def predictors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Predictor]:
    root = tmp_path_factory.mktemp("models")
    return {arch: Predictor.from_folder(make_folder(root / arch, arch)) for arch in ARCHS}


def elongated_image(seed: int = 0) -> Image.Image:
    """A 1:4 hanging-scroll shaped RGB image (60 wide, 240 high) with some structure."""
    rng = np.random.default_rng(seed)
    img = np.full((240, 60, 3), 235, np.uint8)
    img[40:200:7, 10:50] = rng.integers(0, 80, (23, 40, 3), dtype=np.uint8)
    return Image.fromarray(img)


def square_gray(seed: int = 1) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (90, 90), dtype=np.uint8), mode="L")


def assert_no_hooks(model: torch.nn.Module) -> None:
    for name, module in model.named_modules():
        assert not module._forward_hooks, f"forward hook left on {name!r}"
        assert not module._forward_pre_hooks, f"forward pre-hook left on {name!r}"
        assert not module._backward_hooks, f"backward hook left on {name!r}"


def reference_gradcam(model: torch.nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    """Grad-CAM written out with plain autograd: S×S map normalised like the library."""
    store: dict[str, torch.Tensor] = {}

    def grab(module: torch.nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        store["a"] = output.detach().requires_grad_()
        return store["a"]

    handle = model.cam_target_layer().register_forward_hook(grab)
    try:
        with torch.enable_grad():
            logits = model(x)
            (grad,) = torch.autograd.grad(logits[0, target], store["a"])
    finally:
        handle.remove()
    weights = grad.mean((2, 3), keepdim=True)
    cam = torch.relu((weights * store["a"].detach()).sum(1))[0].cpu().numpy()
    cam = cam - cam.min()
    cam = cv2.resize((cam / (1e-7 + cam.max())).astype(np.float32), (x.shape[-1], x.shape[-2]))
    cam = cam - cam.min()
    return cam / (1e-7 + cam.max())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("make_image", [elongated_image, square_gray], ids=["scroll-1x4", "square-gray"])
def test_analyse_maps_at_image_size(predictors: dict[str, Predictor], arch: str, make_image) -> None:
    p = predictors[arch]
    image = make_image()
    w, h = image.size
    a = p.analyse(image)
    probs = np.array(list(a.prediction.probabilities.values()))
    assert list(a.prediction.probabilities) == CLASSES
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert a.prediction.label == CLASSES[int(probs.argmax())] == a.cam_target
    assert a.prediction.confidence == pytest.approx(probs.max())
    assert a.cam.shape == (h, w) and a.cam.dtype == np.float32
    assert 0.0 <= a.cam.min() and a.cam.max() <= 1.0
    spatial, channel = EXPECTED_ATTENTION[arch]
    assert set(a.attention) == spatial
    assert set(a.channel_weights) == channel
    for name, m in a.attention.items():
        assert m.shape == (h, w) and m.dtype == np.float32, name
        assert 0.0 <= m.min() and m.max() <= 1.0, name
    for v in a.channel_weights.values():
        assert v.ndim == 1 and 0.0 <= v.min() and v.max() <= 1.0
    if arch == "inkfusion":
        assert set(a.gates) == {"gate_channel", "gate_spatial"}
        assert a.gates["gate_channel"] + a.gates["gate_spatial"] == pytest.approx(1.0, abs=1e-4)
    else:
        assert a.gates == {}
    assert_no_hooks(p.model)


@pytest.mark.parametrize("arch", ARCHS)
def test_chosen_target_matches_reference_gradcam(predictors: dict[str, Predictor], arch: str) -> None:
    p = predictors[arch]
    image = elongated_image()
    x = p.preprocessor(image)[None]
    predicted = p.predict([image])[0].label
    other = next(c for c in CLASSES if c != predicted)
    k = CLASSES.index(other)
    a = p.analyse(image, target=other)
    assert a.cam_target == other
    assert a.prediction.label == predicted
    assert a.cam.shape == (240, 60)
    assert p.analyse(image, target=k).cam_target == other
    result = class_activation_map(p.model, x, "gradcam", k)
    assert result.targets == [k]
    np.testing.assert_allclose(result.heat[0], reference_gradcam(p.model, x, k), atol=1e-4)
    default = class_activation_map(p.model, x, "gradcam")
    assert default.targets == [CLASSES.index(predicted)]
    np.testing.assert_allclose(default.heat[0], reference_gradcam(p.model, x, CLASSES.index(predicted)), atol=1e-4)
    assert_no_hooks(p.model)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", sorted(CAM_METHODS))
def test_every_cam_method(predictors: dict[str, Predictor], arch: str, method: str) -> None:
    p = predictors[arch]
    image = square_gray()
    a = p.analyse(image, cam_method=method, target=CLASSES[2])
    assert a.cam_method == method and a.cam_target == CLASSES[2]
    assert a.cam.shape == (90, 90) and np.isfinite(a.cam).all()
    assert 0.0 <= a.cam.min() and a.cam.max() <= 1.0
    probs = np.array(list(a.prediction.probabilities.values()))
    np.testing.assert_allclose(probs, list(p.predict([image])[0].probabilities.values()), atol=1e-5)
    assert_no_hooks(p.model)


@pytest.mark.parametrize("arch", ARCHS)
def test_predict_agrees_with_analyse(predictors: dict[str, Predictor], arch: str) -> None:
    p = predictors[arch]
    images = [elongated_image(0), square_gray(1), elongated_image(2).rotate(90, expand=True)]
    batch = p.predict(images, batch_size=2)
    assert len(batch) == 3
    for image, pred in zip(images, batch):
        a = p.analyse(image)
        assert a.prediction.label == pred.label
        np.testing.assert_allclose(
            list(a.prediction.probabilities.values()), list(pred.probabilities.values()), atol=1e-5
        )
    assert p.predict([]) == []


def test_concurrent_calls_match_sequential(predictors: dict[str, Predictor]) -> None:
    p = predictors["inkfusion"]
    images = [elongated_image(s) if s % 2 else square_gray(s) for s in range(4)]
    sequential = [(p.predict([img])[0], p.analyse(img)) for img in images]

    def work(i: int):
        img = images[i]
        return p.predict([img])[0], p.analyse(img)

    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(work, [i % 4 for i in range(12)]))
    for i, (pred, a) in enumerate(concurrent):
        ref_pred, ref_a = sequential[i % 4]
        assert pred.label == ref_pred.label
        np.testing.assert_allclose(list(pred.probabilities.values()), list(ref_pred.probabilities.values()), atol=1e-6)
        np.testing.assert_allclose(list(a.prediction.probabilities.values()),
                                   list(ref_a.prediction.probabilities.values()), atol=1e-6)
        assert a.cam.shape == ref_a.cam.shape
        np.testing.assert_allclose(a.cam, ref_a.cam, atol=1e-5)
        assert a.attention.keys() == ref_a.attention.keys()
        for name in a.attention:
            np.testing.assert_allclose(a.attention[name], ref_a.attention[name], atol=1e-5)
    assert_no_hooks(p.model)


def test_bad_requests_fail_cleanly(predictors: dict[str, Predictor]) -> None:
    p = predictors["smallcnn"]
    image = square_gray()
    with pytest.raises(ValueError, match="unknown class"):
        p.analyse(image, target="Ming")
    with pytest.raises(ValueError, match="out of range"):
        p.analyse(image, target=len(CLASSES))
    with pytest.raises(ValueError, match="unknown CAM method"):
        p.analyse(image, cam_method="scorecam")
    x = p.preprocessor(image)[None]
    with pytest.raises(ValueError, match=f"Grad-CAM failed \\(target class index {len(CLASSES)} out of range"):
        class_activation_map(p.model, x, "gradcam", len(CLASSES))  # IndexError inside the library's with block
    assert_no_hooks(p.model)


def test_map_size_and_card_fields(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "m", "smallcnn", uncertainty_threshold=1.0,
                         dynasty={"Tang": "Tang", "Song": "Song", "Yuan": "Yuan"})
    p = Predictor.from_folder(folder, device="cpu")
    assert (p.task, p.version, p.classes) == ("painting-subject", "test", CLASSES)
    pred = p.predict([square_gray()])[0]
    assert pred.uncertain and pred.dynasty == pred.label
    a = p.analyse(elongated_image(), map_size=(30, 120))
    assert a.cam.shape == (120, 30)
    plain = Predictor.from_folder(make_folder(tmp_path / "n", "smallcnn"), device="cpu")
    assert not plain.predict([square_gray()])[0].uncertain


def test_crop_to_image_takes_the_image_region() -> None:
    image = Image.new("RGB", (50, 200))
    _, box = letterbox(image, SIZE)
    assert box == Letterbox(SIZE, 48, 0, 32, 128)
    canvas_map = np.zeros((SIZE, SIZE), np.float32)
    canvas_map[:, box.left:box.left + box.width] = np.linspace(0, 1, box.width, dtype=np.float32)[None]
    out = crop_to_image(canvas_map, box, (50, 200))
    assert out.shape == (200, 50) and out.dtype == np.float32
    assert out[:, 0].max() < 0.05 and out[:, -1].min() > 0.95  # padding cut off, ramp spans the image
    assert np.all(np.diff(out[100]) >= -1e-6)
    np.testing.assert_allclose(out[:, 25], out[0, 25], atol=1e-6)  # constant along the height
    coarse = np.zeros((4, 4), np.float32)  # stride-32 map: the image spans canvas columns 48..80
    coarse[:, 1:3] = 1.0
    assert crop_to_image(coarse, box, (50, 200)).min() > 0.5


def test_overlay_and_top_channels() -> None:
    image = Image.new("L", (40, 160), 200)
    heat = np.linspace(0, 1, 160 * 40, dtype=np.float32).reshape(160, 40)
    assert np.array_equal(np.asarray(overlay(image, heat, 0.0)), np.asarray(image.convert("RGB")))
    shown = overlay(image.resize((20, 80)), heat, 0.6, colormap="jet")
    assert shown.size == (20, 80) and shown.mode == "RGB"
    full = np.asarray(overlay(image, heat, 1.0, colormap="jet")).astype(int)
    assert full[-1, -1, 0] > full[-1, -1, 2]  # JET's red where the heat is 1 (RGB order)
    # alpha follows the heat: out = image + opacity·heat·(colour − image)
    colour = colorize(heat, "jet").astype(np.float32)
    expected = np.rint(200 + 0.6 * heat[..., None] * (colour - 200))
    np.testing.assert_allclose(np.asarray(overlay(image, heat, 0.6, colormap="jet")), expected, atol=1)  # rounding
    with pytest.raises(ValueError, match=r"opacity must be in \[0, 1\], got 1\.5"):
        overlay(image, heat, 1.5)
    assert [(h, a) for h, _, a in legend_stops("jet", 3, 0.5)] == [(0.0, 0.0), (0.5, 0.25), (1.0, 0.5)]
    assert legend_stops("jet", 3)[-1][1] == tuple(colorize(np.ones((1, 1)), "jet")[0, 0])
    assert top_channels(np.array([0.1, 0.9, 0.5]), 2) == [(1, pytest.approx(0.9)), (2, pytest.approx(0.5))]


def test_zero_heat_keeps_the_original_colour() -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    heat = np.zeros((30, 50), np.float32)
    heat[10:20, 20:30] = 1.0
    shown = np.asarray(overlay(Image.fromarray(rgb), heat, 1.0, colormap="inferno"))
    cold = heat == 0
    np.testing.assert_array_equal(shown[cold], rgb[cold])  # untouched, not tinted by inferno's dark purple
    np.testing.assert_array_equal(shown[~cold], colorize(heat, "inferno")[~cold])


def test_overlay_treats_nan_as_cold_and_clips_out_of_range_heat() -> None:
    image = Image.fromarray(np.random.default_rng(4).integers(0, 256, (30, 40, 3), dtype=np.uint8))
    heat = np.linspace(-0.5, 1.5, 30 * 40, dtype=np.float32).reshape(30, 40)
    heat[0, :5] = np.nan
    clean = np.clip(np.nan_to_num(heat, nan=0.0), 0.0, 1.0)
    assert np.array_equal(np.asarray(overlay(image, heat, 0.7)), np.asarray(overlay(image, clean, 0.7)))
    assert np.array_equal(np.asarray(overlay(image, heat, 0.7))[0, :5], np.asarray(image)[0, :5])  # cold: untouched
    assert np.array_equal(heat_levels(heat), np.rint(clean * 255).astype(np.uint8))


def test_cam_puts_a_training_model_in_eval_mode_and_leaves_an_eval_model_untouched(tmp_path: Path) -> None:
    """The wrapper skips pytorch-grad-cam's recursive ``eval()`` only where the model is in
    eval mode already; a model handed over in training mode still ends fully in eval mode
    (dropout and batch-norm statistics frozen), as with the library's own call."""
    model = build_model({"arch": "inkfusion", "num_classes": len(CLASSES), "pretrained": None, "image_size": SIZE})
    x = torch.randn(1, 3, SIZE, SIZE)
    model.train()
    class_activation_map(model, x)
    assert not any(m.training for m in model.modules())
    calls: list[bool] = []
    original = torch.nn.Module.train

    def spy(module: torch.nn.Module, mode: bool = True) -> torch.nn.Module:
        calls.append(mode)
        return original(module, mode)

    torch.nn.Module.train = spy  # type: ignore[method-assign]
    try:
        eval_result = class_activation_map(model, x)
    finally:
        torch.nn.Module.train = original  # type: ignore[method-assign]
    assert calls == [], "an eval-mode model is not walked again"
    model.train()
    train_result = class_activation_map(model, x)
    np.testing.assert_allclose(train_result.heat, eval_result.heat, atol=1e-6)
    torch.testing.assert_close(train_result.logits, eval_result.logits)
