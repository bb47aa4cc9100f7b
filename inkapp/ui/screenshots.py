"""Refresh the README's screenshots from the shipped models:

    python -m inkapp.ui.screenshots --out docs/screenshots

Starts ``inkapp serve`` with the shipped models (``weights/``, or ``$INKAPP_WEIGHTS_DIR``)
over a temporary data directory (nothing of it is kept), drives Debian's chromium with
Playwright (:mod:`inkapp.dev.browser`; the ``test`` extra) and uploads the example images
we may ship (``assets/examples/``, rendered by ``assets/make_examples.py``). It writes

* ``analyse-en.png`` / ``analyse-zh.png`` — the Analyse tab on the hanging-scroll landscape
  in English (browser locale en-GB) and in Chinese (zh-CN);
* ``scroll.png`` — the 9:1 handscroll's result with the long-scroll viewer, panned to the
  stretch where the heat map differs most from the original (:func:`pan_to_heat`);
* ``calligraphy.png`` — the rubbing's result, domain "auto" (the domain model routes it; the
  colour heuristic where none is installed);
* ``review.png`` — the review queue after those uploads;
* ``models.png`` — the Models tab.

The paintings are uploaded with the domain "painting" chosen, as a curator would: the
shipped domain model takes the grey procedural handscroll for calligraphy (60%), and the
colour heuristic (apps without a domain model, like the browser tests') both grey scrolls.

Each picture is the page from its top down to the end of what it shows (CSS px, window
1400 px wide), stored as a palette PNG (median-cut palette, no dithering: dithering noise
made the pictures about 60 % larger; ``optimize=True``) of at most :data:`MAX_WIDTH` px
width and :data:`MAX_BYTES` bytes. Width is kept before colours: a picture over the byte
limit with 256 colours is tried with :data:`PALETTES` fewer, and only then scaled down by
:data:`SHRINK` steps until it fits.
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from inkapp.dev.browser import choose_domain, chromium, open_page, upload
from inkapp.dev.procs import serve_app
from inkapp.paths import weights_root
from inkapp.store.files import atomic_write_bytes

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "assets" / "examples"
#: Largest width (px) and size (bytes) of a stored screenshot; palette sizes tried in turn;
#: scale factor per retry when even the smallest palette is too large.
MAX_WIDTH = 1400
MAX_BYTES = 300_000
PALETTES = (256, 128)
SHRINK = 0.85
#: CSS px of page kept below the last element a picture shows.
MARGIN = 16
#: Pause (ms) after the images have loaded, for charts and transitions to finish drawing.
SETTLE_MS = 1500
#: Seconds the app may take to start (loading every shipped model on a shared CPU).
START_TIMEOUT_S = 900.0

PAINTING = "ink-landscape-scroll.jpg"
HANDSCROLL = "ink-handscroll.jpg"
RUBBING = "kaishu-rubbing.png"


def compress_png(png: bytes, max_width: int = MAX_WIDTH, max_bytes: int = MAX_BYTES) -> bytes:
    """A screenshot (PNG bytes) as a palette PNG of at most ``max_width`` px width and
    ``max_bytes`` bytes (see the module docstring). Raises ValueError when even a 200 px
    wide copy is larger than ``max_bytes``."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.Resampling.LANCZOS)
    while True:
        for colours in PALETTES:
            buf = io.BytesIO()
            image.quantize(colours).save(buf, "PNG", optimize=True)
            if buf.tell() <= max_bytes:
                return buf.getvalue()
        if image.width <= 200:
            raise ValueError(f"a screenshot stays above {max_bytes} bytes even at {image.width} px wide")
        image = image.resize((round(image.width * SHRINK), round(image.height * SHRINK)), Image.Resampling.LANCZOS)


@dataclass(frozen=True)
class Shot:
    """One stored picture: its file name and the size it was stored at."""

    path: Path
    width: int
    height: int
    size_bytes: int


def save_shot(page, out: Path, name: str, bottom_of: str) -> Shot:
    """Screenshot ``page`` from its top to :data:`MARGIN` px below the element matching the
    selector ``bottom_of`` and store it compressed as ``out / name``."""
    element = page.locator(bottom_of).first
    element.wait_for(state="visible")
    element.scroll_into_view_if_needed()  # lazily loaded images above it start loading
    bottom = element.evaluate("e => e.getBoundingClientRect().bottom + window.scrollY")  # page coordinates
    page.wait_for_function("""(bottom) => Array.from(document.images)
        .filter(i => i.getClientRects().length > 0 && i.getBoundingClientRect().top + window.scrollY < bottom)
        .every(i => i.complete)""", arg=bottom)  # shown images above the bottom (a hidden tab's never load)
    page.evaluate("() => window.scrollTo(0, 0)")
    page.wait_for_timeout(SETTLE_MS)
    height = page.evaluate("() => document.documentElement.scrollHeight")
    clip = {"x": 0, "y": 0, "width": page.viewport_size["width"], "height": min(height, bottom + MARGIN)}
    data = compress_png(page.screenshot(full_page=True, clip=clip))
    atomic_write_bytes(out / name, data)
    with Image.open(io.BytesIO(data)) as image:
        return Shot(out / name, image.width, image.height, len(data))


#: Per-column sum of |heat − original| (RGB) of a long-scroll frame's two images, at
#: their natural size (a canvas read: works for data: and same-origin URLs alike).
_COLUMN_DIFFERENCE_JS = """async (frame) => {
    const [a, b] = ['original', 'heat'].map(n => frame.querySelector('img.ink-scroll-' + n));
    await Promise.all([a.decode(), b.decode()]);
    const w = a.naturalWidth, h = a.naturalHeight;
    const pixels = (img) => { const c = document.createElement('canvas'); c.width = w; c.height = h;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0); return g.getImageData(0, 0, w, h).data; };
    const pa = pixels(a), pb = pixels(b), column = new Float64Array(w);
    for (let i = 0; i < pa.length; i += 4) {
        column[(i / 4) % w] += Math.abs(pa[i] - pb[i]) + Math.abs(pa[i + 1] - pb[i + 1]) + Math.abs(pa[i + 2] - pb[i + 2]);
    }
    return Array.from(column);
}"""


def pan_to_heat(page, task: str = "painting-subject") -> float:
    """Scroll ``task``'s handscroll frame sideways so that the stretch where its heat map
    differs most from the original (the hottest part) is in view; returns the new
    ``scrollLeft`` in CSS px. A frame that shows the whole width is left at 0."""
    frame = page.locator(f"#ink-scroll-{task} .ink-scroll-frame")
    column = np.asarray(frame.evaluate(_COLUMN_DIFFERENCE_JS), dtype=np.float64)
    shown, drawn = frame.evaluate("f => [f.clientWidth, f.querySelector('img.ink-scroll-original').clientWidth]")
    window = min(column.size, max(1, round(column.size * shown / drawn)))  # image columns in view
    start = int(np.argmax(np.convolve(column, np.ones(window), mode="valid")))
    left = start * drawn / column.size
    frame.evaluate("(f, x) => { f.scrollLeft = x; }", left)
    return float(frame.evaluate("f => f.scrollLeft"))


def take_screenshots(browser, url: str, out: Path, examples: Path = EXAMPLES,
                     log: Callable[[str], None] = print) -> list[Shot]:
    """Drive the app at ``url`` in ``browser`` (a Playwright Browser) and store the six
    pictures of the module docstring in ``out``; returns them in the order taken."""
    out.mkdir(parents=True, exist_ok=True)
    shots: list[Shot] = []

    def keep(shot: Shot) -> None:
        shots.append(shot)
        log(f"{shot.path}: {shot.width}×{shot.height} px, {shot.size_bytes} bytes")

    def analysed(name: str, locale: str = "en-GB", task: str = "painting-subject", domain: str = "painting"):
        page = open_page(browser, url, locale=locale)  # a fresh session: one upload on screen
        choose_domain(page, domain)
        upload(page, examples / name, task=task)
        return page

    page = analysed(PAINTING)
    keep(save_shot(page, out, "analyse-en.png", "#ink-compare-painting-subject"))
    page.context.close()
    page = analysed(PAINTING, locale="zh-CN")
    keep(save_shot(page, out, "analyse-zh.png", "#ink-compare-painting-subject"))
    page.context.close()
    page = analysed(HANDSCROLL)
    pan_to_heat(page)
    keep(save_shot(page, out, "scroll.png", "#ink-scroll-painting-subject"))
    page.context.close()
    page = analysed(RUBBING, task="calligraphy-script", domain="auto")
    keep(save_shot(page, out, "calligraphy.png", "#ink-compare-calligrapher"))
    page.get_by_role("tab", name="Review", exact=True).first.click()
    page.locator("#ink-queue-gallery .thumbnail-item").first.wait_for(state="visible")
    keep(save_shot(page, out, "review.png", "#ink-corrections-view"))
    page.get_by_role("tab", name="Models", exact=True).first.click()
    page.locator("#ink-card", has_text="Version").wait_for(state="visible")
    keep(save_shot(page, out, "models.png", "#ink-retrain"))
    page.context.close()
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inkapp.ui.screenshots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs (e.g. docs/screenshots)")
    parser.add_argument("--weights", type=Path, default=weights_root(),
                        help="weights root the app serves (default: the shipped weights/)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="inkapp-screenshots-") as tmp:
        env = {"INKAPP_DATA_DIR": str(Path(tmp) / "data"), "INKAPP_WEIGHTS_DIR": str(args.weights.resolve()),
               "INKAPP_EXPERTS": "", "INKAPP_HF_EXPERTS": ""}
        with serve_app(Path(tmp) / "server.log", env, START_TIMEOUT_S, cwd=REPO) as (url, _), chromium() as browser:
            take_screenshots(browser, url, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
