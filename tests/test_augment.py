"""Training augmentations: the content-aware crop and the recipes' shapes."""
from __future__ import annotations

import pytest
import torch

from inkapp.data.augment import ContentCrop, build_augment


def _scroll_canvas(size: int = 512) -> torch.Tensor:
    """A tall scroll letterboxed into a square canvas: ink only in columns 224..287."""
    canvas = torch.full((3, size, size), 255, dtype=torch.uint8)
    canvas[:, :, 224:288] = 200
    return canvas


def test_content_crop_windows_always_hold_content() -> None:
    crop = ContentCrop(128)
    canvas = _scroll_canvas()
    torch.manual_seed(0)
    lefts = set()
    for _ in range(200):
        out = crop(canvas)
        assert out.shape == (3, 128, 128)
        assert (out != 255).any(), "a window fell wholly on the letterbox padding"
        lefts.add(int(torch.nonzero((out != 255).any(0).any(0))[0]))
    assert len(lefts) > 1  # the window position varies


def test_content_crop_covers_the_whole_content_extent() -> None:
    canvas = torch.full((3, 256, 256), 255, dtype=torch.uint8)
    canvas[:, 10:246, 10:246] = torch.arange(10, 246, dtype=torch.uint8).view(1, -1, 1)  # pixel value = its row
    torch.manual_seed(1)
    tops = [int(ContentCrop(64)(canvas)[0, 32, 32]) - 32 for _ in range(300)]
    assert min(tops) == 0 and max(tops) == 256 - 64  # windows reach both ends of the page


def test_content_crop_leaves_small_canvases_and_blank_pages_alone() -> None:
    small = torch.zeros(3, 64, 64, dtype=torch.uint8)
    assert ContentCrop(128)(small) is small
    blank = torch.full((3, 300, 300), 255, dtype=torch.uint8)
    assert ContentCrop(128)(blank).shape == (3, 128, 128)


@pytest.mark.parametrize("recipe", ["calligraphy", "glyph", "painting", "none"])
def test_recipes_with_crop_give_the_crop_size(recipe: str) -> None:
    torch.manual_seed(0)
    out = build_augment(recipe, crop=96)(_scroll_canvas(256))
    assert out.shape == (3, 96, 96) and out.dtype == torch.uint8


def test_no_recipe_and_no_crop_is_identity() -> None:
    assert build_augment("none") is None
    with pytest.raises(ValueError, match="unknown augmentation recipe"):
        build_augment("watercolour")
