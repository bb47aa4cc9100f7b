"""Gradio's cache of PIL outputs, made atomic (inkapp.ui.gradio_cache): the same image
returned by many requests at once is written once, whole, and never rewritten."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from gradio import processing_utils
from PIL import Image

from inkapp.ui import gradio_cache


def test_identical_images_are_written_once_and_whole(tmp_path: Path) -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 64, 3), dtype=np.uint8))
    expected = processing_utils.encode_pil_to_bytes(image, "jpeg")
    first = Path(gradio_cache.save_pil_to_cache(image, str(tmp_path), format="jpeg"))
    assert first.read_bytes() == expected and first.name == "image.jpeg"
    inode = first.stat().st_ino
    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda _: gradio_cache.save_pil_to_cache(image, str(tmp_path), format="jpeg"), range(32)))
    assert set(paths) == {str(first)}
    assert first.stat().st_ino == inode, "an existing cached image is never rewritten (a reader may be streaming it)"
    assert first.read_bytes() == expected
    assert [p.name for p in first.parent.iterdir()] == ["image.jpeg"], "no temporary file is left behind"


def test_install_routes_gradio_image_outputs_through_it(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(processing_utils, "save_pil_to_cache", processing_utils.save_pil_to_cache)
    gradio_cache.install()
    assert processing_utils.save_pil_to_cache is gradio_cache.save_pil_to_cache
