"""Prediction and explanation for a saved model folder (``model.safetensors`` + ``card.json``).

:class:`Predictor` is what the app and the CLI use:

* :meth:`Predictor.predict` — batched class probabilities, safe to call from many
  threads at once (no shared mutable state; ``torch.inference_mode``; autocast on CUDA);
* :meth:`Predictor.analyse` — one image: prediction, Grad-CAM heat map and the model's
  own attention maps from ONE forward + ONE backward pass, every map cropped to the
  image region and resampled to the image's true size. The CAM path hooks the
  model's target layer, so it is serialised by a lock held by the predictor (its hook
  only acts for the analysing thread, so concurrent :meth:`predict` calls are unaffected).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from inkapp.calibration import Calibrator
from inkapp.data.preprocess import Preprocessor, normalise
from inkapp.device import default_device
from inkapp.explain.cam import class_activation_map
from inkapp.explain.contract import map_infos
from inkapp.explain.overlay import crop_to_image
from inkapp.models import load_model
from inkapp.models.fold import inference_form
from inkapp.scoring import ScoringSpec, score_canvases



@dataclass(frozen=True)
class Prediction:
    """One image's prediction.

    ``label`` — the arg-max class; ``confidence`` — its probability in [0, 1];
    ``probabilities`` — class -> probability (sums to 1, in card order). When the card
    carries a ``calibration`` section these are the calibrated probabilities
    (:class:`inkapp.calibration.Calibrator`), ``uncertain`` is its flag (calibrated
    confidence below the threshold chosen for 97 % accuracy on what is not flagged) and
    ``answer_set`` its conformal set (class keys, most likely first); without one,
    ``uncertain`` compares the raw confidence with the card's ``uncertainty_threshold``
    and ``answer_set`` is empty. ``dynasty`` — the label's dynasty from the card's
    ``dynasty`` table, if any.
    """

    label: str
    confidence: float
    probabilities: dict[str, float]
    uncertain: bool
    dynasty: str | None = None
    answer_set: tuple[str, ...] = ()


@dataclass(frozen=True)
class Analysis:
    """One image's prediction with its explanations; maps are height×width float32 in
    [0, 1] at the requested size (default: the original image size).

    * ``cam`` — the ``cam_method`` heat map for class ``cam_target``, scaled (by the
      library) so that 1 is its maximum over the whole canvas, padding included;
    * ``attention`` — the model's spatial attention maps by name (InkFusionNet:
      ``dpafm_spatial``, ``gate_channel``, ``gate_spatial``, ``alpha_0``, ``alpha_1``;
      BamNet: ``bam_spatial``, ``bam_attention``; other models: none);
    * ``channel_weights`` — 1-D channel attention vectors by name (``dpafm_channel``,
      ``bam_channel``), values in [0, 1];
    * ``gates`` — mean DPAFM gate over the image region (``gate_channel`` = mean g_c,
      ``gate_spatial`` = mean g_s; they sum to 1), when the model has them.
    """

    prediction: Prediction
    cam: np.ndarray
    cam_target: str
    cam_method: str
    attention: dict[str, np.ndarray]
    channel_weights: dict[str, np.ndarray]
    gates: dict[str, float]


class Predictor:
    """A loaded model with its card, preprocessing and thresholds.

    The predictor owns ``model``: it is moved to ``device`` and put in its inference form
    (:func:`inkapp.models.fold.inference_form`: eval mode, timm batch norms folded into their
    convolutions — same outputs up to float rounding, ~17 % faster at batch 1 and ~40 % at
    batch 16 on CPU —, parameters frozen, channels-last). Do not train or save a model after
    handing it to a predictor.
    """

    def __init__(self, model: nn.Module, card: dict[str, Any], device: str | torch.device | None = None) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self.model = inference_form(model.to(self.device))
        self.card = card
        self.classes: list[str] = list(card["classes"])
        self.task: str = card.get("task", "")
        self.domain: str = card.get("domain", "")
        self.version: str = str(card.get("version", ""))
        self.preprocessor = Preprocessor.from_card(card)
        self.scoring = ScoringSpec.from_card(card)
        threshold = card.get("uncertainty_threshold")
        self.uncertainty_threshold: float | None = None if threshold is None else float(threshold)
        self.dynasties: dict[str, str] = dict(card.get("dynasty") or {})
        self.calibrator = Calibrator.from_card(card)
        if self.calibrator is not None and self.calibrator.threshold is not None:
            self.uncertainty_threshold = float(self.calibrator.threshold)
        self._cam_lock = threading.Lock()

    @classmethod
    def from_folder(cls, folder: str | Path, device: str | torch.device | None = None) -> "Predictor":
        """Load a model folder (raises :class:`inkapp.models.ModelLoadError` if unusable)
        onto ``device`` (default: CUDA if available, else CPU)."""
        device = torch.device(device) if device is not None else default_device()
        model, card = load_model(folder, device)
        return cls(model, card, device)

    def probabilities(self, canvases: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """uint8 N×3×S×S letterboxed canvases -> N×K float32 class probabilities on the CPU,
        through :func:`inkapp.scoring.score_canvases` (the card's test-time views). Thread-safe."""
        return score_canvases(self.model, canvases, self.scoring, self.device, batch_size)

    def prediction(self, probs: np.ndarray) -> Prediction:
        """K raw probabilities -> :class:`Prediction` (calibrated when the card says how)."""
        answer: tuple[str, ...] = ()
        if self.calibrator is not None:
            probs = self.calibrator.probabilities(probs[None])[0]
            uncertain = bool(self.calibrator.uncertain(probs[None])[0])
            answer = tuple(self.classes[i] for i in self.calibrator.answer_sets(probs[None])[0])
        best = int(np.argmax(probs))
        confidence = float(probs[best])
        label = self.classes[best]
        if self.calibrator is None:
            uncertain = self.uncertainty_threshold is not None and confidence < self.uncertainty_threshold
        return Prediction(
            label=label,
            confidence=confidence,
            probabilities={c: float(p) for c, p in zip(self.classes, probs)},
            uncertain=uncertain,
            dynasty=self.dynasties.get(label),
            answer_set=answer,
        )

    def predict(self, images: list[Image.Image], batch_size: int = 16) -> list[Prediction]:
        """Predictions for ``images`` (any sizes and modes), in order, ``batch_size`` at a
        time. Thread-safe. On CUDA the forward pass runs under float16 autocast (the
        softmax is computed in float32)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out: list[Prediction] = []
        for start in range(0, len(images), batch_size):
            canvases = torch.stack([self.preprocessor.canvas(img)[0] for img in images[start:start + batch_size]])
            out.extend(self.prediction(p) for p in self.probabilities(canvases, batch_size).numpy())
        return out

    def class_index(self, target: str | int) -> int:
        """Index of a class given by name or index (ValueError if there is no such class)."""
        if isinstance(target, str):
            if target not in self.classes:
                raise ValueError(f"unknown class '{target}'; classes: {', '.join(self.classes)}")
            return self.classes.index(target)
        if not 0 <= int(target) < len(self.classes):
            raise ValueError(f"class index {target} out of range for {len(self.classes)} classes")
        return int(target)

    def analyse(
        self,
        image: Image.Image,
        cam_method: str = "gradcam",
        target: str | int | None = None,
        map_size: tuple[int, int] | None = None,
    ) -> Analysis:
        """Prediction, ``cam_method`` heat map and attention maps of ``image`` from one
        forward + one backward pass (float32, no autocast). When the card declares
        ``tta_hflip`` the prediction averages the probabilities of that pass with one more
        forward pass of the mirrored canvas — the same views as
        :func:`inkapp.scoring.score_canvases`, so the app shows the card's numbers.

        ``target`` — class (name or index) the heat map explains; default the predicted
        class. ``map_size`` — (width, height) of the returned maps in pixels; default
        ``image.size`` (pass a display size for very large scans). Thread-safe; calls
        are serialised.
        """
        index = None if target is None else self.class_index(target)
        canvas, box = self.preprocessor.canvas(image)
        x = normalise(canvas[None].to(self.device), self.preprocessor.mean, self.preprocessor.std)
        with self._cam_lock:
            result = class_activation_map(self.model, x, cam_method, index)
        probs = torch.softmax(result.logits[0], dim=0).cpu().numpy()
        if self.scoring.tta_hflip:
            mirrored = score_canvases(self.model, canvas.flip(-1)[None], replace(self.scoring, tta_hflip=False),
                                      self.device)
            probs = (probs + mirrored[0].numpy()) / 2
        size = image.size if map_size is None else map_size
        attention: dict[str, np.ndarray] = {}
        channel_weights: dict[str, np.ndarray] = {}
        infos = map_infos(self.model)
        for name, tensor in result.attention.items():
            if name not in infos:
                continue  # only declared maps reach the explanation layer
            values = tensor[0].float().cpu().numpy()
            if infos[name].kind == "channel":
                channel_weights[name] = values
            else:  # 1×h×w spatial or gate map
                attention[name] = crop_to_image(values[0], box, size)
        gates = {name: float(attention[name].mean()) for name, info in infos.items()
                 if info.kind == "gate" and name in attention}
        return Analysis(
            prediction=self.prediction(probs),
            cam=crop_to_image(result.heat[0], box, size),
            cam_target=self.classes[result.targets[0]],
            cam_method=cam_method,
            attention=attention,
            channel_weights=channel_weights,
            gates=gates,
        )
