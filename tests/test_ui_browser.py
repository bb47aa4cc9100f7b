"""The launched app in a real chromium (Playwright, CJK font): the Chinese and the English
UI, a 10:1 scroll shown whole at a readable height, queue -> open -> correct -> next,
and sign-in once then correct, undo, promote and roll back. Screenshots go to a
temporary folder only (``python -m inkapp.ui.screenshots`` refreshes docs/screenshots)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from inkapp.store.versions import candidates_root

from conftest import TEST_EXPERT, UI_TEST_MODELS, LaunchedApp, make_random_model

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test extra)")
expect = sync_api.expect

CHROMIUM = Path("/usr/bin/chromium")
SAMPLE = Path(__file__).parent / "data" / "chelsea.jpg"
TIMEOUT_MS = 300_000  # generous: the CPU is shared with training jobs
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SUBJECT_ZH = {"figure": "人物", "flower_bird": "花鸟", "landscape": "山水"}
SUBJECT_EN = {"figure": "figure 人物", "flower_bird": "flower-and-bird 花鸟", "landscape": "landscape 山水"}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium to run the browser tests)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url: str, locale: str = "en-GB"):
    """A fresh browser context (its own session) in ``locale`` with the app loaded."""
    context = browser.new_context(locale=locale, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page.goto(url)
    page.locator("#ink-upload").wait_for(state="visible")
    return page


def choose(page, dropdown_id: str, option: str) -> None:
    """Pick ``option`` (its shown text) in a gradio dropdown."""
    page.locator(f"#{dropdown_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def upload(page, path: Path) -> None:
    page.locator("#ink-upload input[type=file]").set_input_files(str(path))
    expect(page.locator("#ink-status")).to_contain_text(path.name)
    page.locator("#ink-summary-painting-subject .ink-label").wait_for(state="visible")


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
    page.locator("#ink-domain label", has_text="painting").click()  # a blank strip could pass for calligraphy
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


def test_queue_open_correct_next(browser, launched_app: LaunchedApp, tmp_path: Path) -> None:
    page = open_page(browser, launched_app.url)
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    Image.new("RGB", (300, 200), (120, 140, 90)).save(first)
    Image.new("RGB", (200, 300), (30, 60, 200)).save(second)
    page.locator("#ink-domain label", has_text="painting").click()
    page.locator("#ink-upload input[type=file]").set_input_files([str(first), str(second)])
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
