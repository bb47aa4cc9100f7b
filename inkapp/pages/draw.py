"""Drawing a page attribution: numbered boxes coloured by each character's leading master."""
from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from inkapp.pages.attribute import PageAttribution

#: Box colours by master (RGB); other classes get grey.
MASTER_COLOURS: dict[str, tuple[int, int, int]] = {
    "ouyang_xun": (31, 119, 180),
    "yan_zhenqing": (214, 39, 40),
    "liu_gongquan": (44, 160, 44),
    "zhao_mengfu": (148, 103, 189),
}
OTHER_COLOUR = (127, 127, 127)


def draw_boxes(image: Image.Image, attribution: PageAttribution, max_side: int | None = 2000) -> Image.Image:
    """RGB copy of ``image`` (shrunk to ``max_side`` px on its long side if larger;
    None keeps the size) with each classified character's box outlined in its leading
    master's colour (:data:`MASTER_COLOURS`) and numbered 1.. in reading order."""
    page = image.convert("RGB")
    scale = 1.0
    if max_side is not None and max(page.size) > max_side:
        scale = max_side / max(page.size)
        page = page.resize((max(1, round(page.width * scale)), max(1, round(page.height * scale))),
                           Image.Resampling.BOX)
    draw = ImageDraw.Draw(page)
    width = max(1, round(max(page.size) / 400))
    font = ImageFont.load_default(size=max(10, round(max(page.size) / 50)))
    for number, c in enumerate(attribution.characters, start=1):
        b = c.box.scaled(scale)
        colour = MASTER_COLOURS.get(c.label, OTHER_COLOUR)
        draw.rectangle([b.x, b.y, b.x + b.w - 1, b.y + b.h - 1], outline=colour, width=width)
        draw.text((b.x + width + 1, b.y + width), str(number), fill=colour, font=font)
    return page
