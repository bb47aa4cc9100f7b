"""The launched app in a real chromium (Playwright, CJK font): the Chinese and the English
UI, a 10:1 scroll shown whole at a readable height, queue -> open -> correct -> next,
and sign-in once then correct, undo, promote and roll back; the screenshot command's
pictures (taken here against the test app into a temporary folder: tests never write
into docs/; ``python -m inkapp.ui.screenshots --out docs/screenshots`` refreshes those)."""
from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inkapp.store.versions import candidates_root

from conftest import TEST_EXPERT, UI_TEST_MODELS, LaunchedApp, make_random_model

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test extra)")
expect = sync_api.expect
from inkapp.dev.browser import CHROMIUM, choose, choose_domain, chromium, open_page, upload  # noqa: E402 (needs playwright)
from inkapp.ui.screenshots import MAX_BYTES, MAX_WIDTH, compress_png, take_screenshots  # noqa: E402

SAMPLE = Path(__file__).parent / "data" / "chelsea.jpg"
SUBJECT_ZH = {"figure": "人物", "flower_bird": "花鸟", "landscape": "山水"}
SUBJECT_EN = {"figure": "figure 人物", "flower_bird": "flower-and-bird 花鸟", "landscape": "landscape 山水"}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium to run the browser tests)")
    with chromium() as browser:
        yield browser


def test_chinese_ui_follows_the_browser_and_renders_cjk(browser, launched_app: LaunchedApp, tmp_path: Path) -> None:
    page = open_page(browser, launched_app.url, locale="zh-CN")
    expect(page.get_by_role("tab", name="分析")).to_be_visible()
    expect(page.locator("#ink-lang input[value=zh]")).to_be_checked()
    upload(page, SAMPLE)
    label = page.locator("#ink-summary-painting-subject .ink-label").inner_text()
    key = next(k for k, zh in SUBJECT_ZH.items() if label.startswith(zh))  # Chinese name first on a Chinese page
    assert key in UI_TEST_MODELS["painting-subject"][2]
    assert page.locator("#ink-summary-painting-subject .ink-word").inner_text() in ("很可能", "较可能", "不确定——请专家复核")
    expect(page.locator("#ink-summary-painting-subject .ink-reading")).to_contain_text("模型")
    # the CJK font is installed and used: two full-width glyphs are twice the font size wide
    width = page.evaluate("""() => { const c = document.createElement('canvas').getContext('2d');
        c.font = '20px "Noto Sans CJK SC"'; return c.measureText('山水').width; }""")
    assert width == pytest.approx(40, abs=1)
    assert page.evaluate("() => document.fonts.check('20px \"Noto Sans CJK SC\"', '山水')")
    page.screenshot(path=str(tmp_path / "analyse-zh.png"), full_page=True)
    page.context.close()


def test_english_ui_and_a_long_scroll_shown_whole(browser, launched_app: LaunchedApp, tmp_path: Path) -> None:
    page = open_page(browser, launched_app.url, locale="en-US")
    expect(page.get_by_role("tab", name="Analyse")).to_be_visible()
    scroll = tmp_path / "handscroll.png"
    Image.new("RGB", (2000, 200), (236, 228, 210)).save(scroll)
    choose_domain(page, "painting")  # a blank strip could pass for calligraphy
    upload(page, scroll)
    expect(page.locator("#ink-summary-painting-subject .ink-label")).to_contain_text(" ")  # "landscape 山水" style
    for name in ("original", "heat"):
        img = page.locator(f"#ink-scroll-painting-subject img.ink-scroll-{name}")
        img.wait_for(state="visible")
        natural = img.evaluate("e => [e.naturalWidth, e.naturalHeight]")
        box = img.bounding_box()
        assert natural == [2000, 200]  # the whole scroll (its display copy is the image itself)
        assert box["height"] == pytest.approx(360, abs=1) and box["width"] == pytest.approx(3600, abs=2)
    frame = page.locator("#ink-scroll-painting-subject .ink-scroll-frame")
    assert frame.evaluate("e => e.scrollWidth > e.clientWidth")  # pans sideways instead of shrinking
    # switching the language on the page re-labels the page and re-writes the result
    page.locator("#ink-lang label", has_text="中文").click()
    expect(page.get_by_role("tab", name="分析")).to_be_visible()
    expect(page.locator("#ink-scroll-painting-subject .ink-scroll-hint")).to_contain_text("平移")
    page.screenshot(path=str(tmp_path / "scroll.png"), full_page=True)
    page.context.close()


def test_attention_overlays_are_drawn_when_the_researchers_section_opens(browser, launched_app: LaunchedApp,
                                                                         tmp_path: Path) -> None:
    """The model's own attention overlays are drawn on request: none with the upload, all of
    them when a researcher opens the section, and up front for the next image while it stays open."""
    page = open_page(browser, launched_app.url, locale="en-US")
    choose_domain(page, "painting")
    second = tmp_path / "second.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(second)
    upload(page, [SAMPLE, second])
    expect(page.locator("#ink-summary-painting-subject .ink-label")).to_contain_text(" ")
    overlays = page.locator("#ink-attention-painting-subject img")
    assert overlays.count() == 0
    page.locator("#ink-researchers-painting-subject").get_by_text("For researchers").first.click()
    expect(overlays.first).to_be_visible()
    drawn = overlays.count()
    assert drawn >= 1
    page.locator("#ink-gallery img").nth(1).click()  # the next image, with the section still open
    expect(page.locator("#ink-status")).to_contain_text("second.png")
    expect(overlays).to_have_count(drawn)
    page.context.close()


def test_queue_open_correct_next(browser, launched_app: LaunchedApp, tmp_path: Path) -> None:
    page = open_page(browser, launched_app.url)
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    Image.new("RGB", (300, 200), (120, 140, 90)).save(first)
    Image.new("RGB", (200, 300), (30, 60, 200)).save(second)
    choose_domain(page, "painting")
    upload(page, [first, second])
    expect(page.locator("#ink-status")).to_contain_text("Image 1 of 2: first.png")
    page.locator("#ink-gallery .thumbnail-item").nth(1).click()
    expect(page.locator("#ink-status")).to_contain_text("Image 2 of 2: second.png")
    page.get_by_role("tab", name="Review").click()
    thumbs = page.locator("#ink-queue-gallery button.thumbnail-item, #ink-queue-gallery .thumbnail-item")
    thumbs.first.wait_for(state="visible")
    assert thumbs.count() >= 4  # two images x two painting tasks
    caption = page.locator("#ink-queue-gallery").inner_text()
    assert "%" in caption and any(zh in caption for zh in SUBJECT_ZH.values())
    page.screenshot(path=str(tmp_path / "queue.png"), full_page=True)
    thumbs.first.click()
    expect(page.get_by_role("tab", name="Analyse")).to_have_attribute("aria-selected", "true")
    status = page.locator("#ink-status")
    expect(status).to_contain_text(".png")
    opened = status.inner_text()
    task_shown = page.locator("#ink-correct-task input").input_value()
    assert task_shown in ("Painting subject", "Painting technique")
    page.locator("#ink-expert textarea, #ink-expert input").first.fill("queue-expert")
    page.locator("#ink-note textarea").fill("checked from the queue")
    page.locator("#ink-submit").click()
    expect(page.locator(".toast-body", has_text="Saved").first).to_be_visible()
    expect(status).not_to_have_text(opened)  # the next queue item opened
    page.get_by_role("tab", name="Review").click()
    expect(page.locator("#ink-corrections-view")).to_contain_text("queue-expert")
    expect(page.locator("#ink-corrections-view img.ink-thumb").first).to_be_visible()
    page.context.close()


def test_sign_in_once_then_correct_undo_promote_and_roll_back(browser, launched_restricted_app: LaunchedApp,
                                                              tmp_path: Path) -> None:
    name, password = TEST_EXPERT
    task = "painting-subject"
    folder = make_random_model(candidates_root(launched_restricted_app.data_dir, task) / "20260301T000000Z", task,
                               seed=5, version="browser-candidate")
    (folder / "metrics.json").write_text(json.dumps({"test": {"accuracy": 0.8}}))
    page = open_page(browser, launched_restricted_app.url)
    page.locator("#ink-expert input, #ink-expert textarea").first.fill(name)
    page.locator("#ink-password input").fill("wrong")
    page.locator("#ink-sign-in").click()
    expect(page.locator("#ink-signed-in")).to_contain_text("Not signed in")
    page.locator("#ink-password input").fill(password)
    page.locator("#ink-sign-in").click()
    expect(page.locator("#ink-signed-in")).to_contain_text(f"Signed in as {name}")
    expect(page.locator("#ink-password")).to_be_hidden()  # folded away: nothing to type again

    upload(page, SAMPLE)
    predicted = page.locator("#ink-correct-label input").input_value()  # e.g. "landscape 山水"
    choose(page, "ink-correct-label", next(n for n in SUBJECT_EN.values() if n != predicted))
    page.locator("#ink-submit").click()
    expect(page.locator("#ink-correct-message")).to_contain_text(f"by {name}")
    expect(page.locator(".toast-body", has_text="Saved").first).to_be_visible()
    page.locator("#ink-undo").click()
    expect(page.locator("#ink-correct-message")).to_contain_text("Undone")

    page.get_by_role("tab", name="Models").click()
    page.locator("#ink-card", has_text="Version").wait_for(state="visible")
    expect(page.locator("#ink-card")).to_contain_text("held-out works")
    page.locator("#ink-promote").click()
    expect(page.locator("#ink-model-message")).to_contain_text("Promoted browser-candidate")
    expect(page.locator("#ink-history")).to_contain_text(name)
    choose(page, "ink-version", "50.0% accuracy · shipped")
    page.locator("#ink-rollback").click()
    expect(page.locator("#ink-model-message")).to_contain_text("Rolled back painting-subject to shipped")
    expect(page.locator("#ink-history")).to_contain_text("rolled back to")
    history = (candidates_root(launched_restricted_app.data_dir, task).parent / "history.jsonl").read_text()
    assert [json.loads(line)["by"] for line in history.splitlines()] == [name, name]
    page.screenshot(path=str(tmp_path / "models.png"), full_page=True)
    page.context.close()


def test_screenshot_pictures_are_small_palette_pngs() -> None:
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1500, 2000, 3), dtype=np.uint8))
    raw = io.BytesIO()
    noisy.save(raw, "PNG")
    assert raw.tell() > MAX_BYTES  # the input is over the limit, so the shrinking is exercised
    data = compress_png(raw.getvalue())
    with Image.open(io.BytesIO(data)) as small:
        assert small.format == "PNG" and small.mode == "P" and small.width < MAX_WIDTH
        assert small.height == pytest.approx(small.width * 0.75, abs=2)  # aspect ratio kept
    assert len(data) <= MAX_BYTES
    with pytest.raises(ValueError, match="stays above 100 bytes"):
        compress_png(raw.getvalue(), max_bytes=100)


def test_screenshot_command_stores_the_six_pictures(browser, launched_app: LaunchedApp, tmp_path: Path) -> None:
    out = tmp_path / "shots"
    lines: list[str] = []
    shots = take_screenshots(browser, launched_app.url, out, log=lines.append)
    names = ["analyse-en.png", "analyse-zh.png", "scroll.png", "calligraphy.png", "review.png", "models.png"]
    assert [s.path.name for s in shots] == names
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # nothing else (no temporary files left)
    for shot in shots:
        assert shot.size_bytes == shot.path.stat().st_size <= MAX_BYTES
        with Image.open(shot.path) as image:
            assert image.format == "PNG" and image.size == (shot.width, shot.height)
            assert image.width <= MAX_WIDTH and image.height >= 400  # the page down to its result, not a sliver
    assert len(lines) == 6 and all(str(out) in line for line in lines)
