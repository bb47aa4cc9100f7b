"""The launched app in a real chromium (Playwright): analyse, correct, review; saves
screenshots of the main screens to docs/screenshots/."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import UI_TEST_MODELS, LaunchedApp

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test extra)")
expect = sync_api.expect

CHROMIUM = Path("/usr/bin/chromium")
SAMPLE = Path(__file__).parent / "data" / "chelsea.jpg"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
EXPERT = "browser-test-expert"
TIMEOUT_MS = 300_000  # generous: the CPU is shared with training jobs


@pytest.fixture(scope="module")
def page(launched_app: LaunchedApp):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium to run the browser tests)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            sync_api.expect.set_options(timeout=TIMEOUT_MS)
            page.goto(launched_app.url)
            yield page
        finally:
            browser.close()


def choose(page, dropdown_id: str, option: str) -> None:
    """Pick ``option`` in a gradio dropdown."""
    page.locator(f"#{dropdown_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def test_analyse_correct_and_review(page) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#ink-upload input[type=file]").set_input_files(str(SAMPLE))
    label = page.locator("#ink-summary-painting-subject .ink-label")
    label.wait_for(state="visible")
    predicted = label.inner_text().strip()
    assert predicted in UI_TEST_MODELS["painting-subject"][2]
    page.locator("#ink-chart-painting-subject .js-plotly-plot").first.wait_for(state="visible")
    page.locator("#ink-cam-painting-subject img").first.wait_for(state="visible")
    page.locator("#ink-attention-painting-subject img").first.wait_for(state="visible")
    assert "chelsea.jpg" in page.locator("#ink-status").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "analyse.png"), full_page=True)

    corrected = next(c for c in UI_TEST_MODELS["painting-subject"][2] if c != predicted)
    choose(page, "ink-correct-label", corrected)
    page.locator("#ink-expert textarea").fill(EXPERT)
    page.locator("#ink-note textarea").fill("checked in the browser")
    page.locator("#ink-submit").click()
    page.locator("#ink-correct-message", has_text="Saved").wait_for(state="visible")

    page.get_by_role("tab", name="Review").click()
    table = page.locator("#ink-corrections")
    expect(table).to_contain_text(EXPERT)
    expect(table).to_contain_text(corrected)
    expect(page.locator("#ink-queue")).to_contain_text("painting-technique")
    page.screenshot(path=str(SCREENSHOTS / "review.png"), full_page=True)

    page.get_by_role("tab", name="Models").click()
    page.locator("#ink-card", has_text="Version").wait_for(state="visible")
    page.locator("#ink-confusion .js-plotly-plot").first.wait_for(state="visible")
    page.screenshot(path=str(SCREENSHOTS / "models.png"), full_page=True)
