"""Driving the launched app in Debian's chromium with Playwright: used by the browser tests
(``tests/test_ui_browser.py``) and by the screenshot command (``python -m
inkapp.ui.screenshots``). Playwright is a test extra (``pip install -e .[test]``); this
module imports it, nothing on the runtime path imports this module.

The element ids (``#ink-upload``, ``#ink-status``, ``#ink-summary-<task>`` …) are the
``elem_id`` values the Gradio tabs in :mod:`inkapp.ui` declare.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, expect, sync_playwright

#: Debian's chromium (Playwright's own browser download needs the internet).
CHROMIUM = Path("/usr/bin/chromium")
#: No sandbox (containers), no GPU, nothing fetched or synced in the background.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
#: Generous wait for any element or analysis (ms): the CPU is shared with training jobs.
TIMEOUT_MS = 300_000
#: Browser window size (CSS px) of every page.
VIEWPORT = {"width": 1400, "height": 1000}


@contextmanager
def chromium(executable: Path = CHROMIUM) -> Iterator[Browser]:
    """A headless ``executable`` (Debian's chromium) under Playwright, closed on exit.

    Raises FileNotFoundError when ``executable`` does not exist."""
    if not executable.exists():
        raise FileNotFoundError(f"{executable} is missing (install Debian's chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser: Browser, url: str, locale: str = "en-GB", timeout_ms: int = TIMEOUT_MS) -> Page:
    """A fresh browser context (its own app session) in ``locale`` (e.g. ``"zh-CN"``: the
    app follows the browser's language) at :data:`VIEWPORT`, with the app at ``url``
    loaded up to its upload box."""
    context = browser.new_context(locale=locale, viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    expect.set_options(timeout=timeout_ms)
    page.goto(url)
    page.locator("#ink-upload").wait_for(state="visible")
    return page


def choose(page: Page, dropdown_id: str, option: str) -> None:
    """Pick ``option`` (its shown text) in the Gradio dropdown with element id ``dropdown_id``."""
    page.locator(f"#{dropdown_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def choose_domain(page: Page, domain: str) -> None:
    """Click ``domain`` (``"auto"``, ``"painting"`` or ``"calligraphy"``, the radio's shown
    text) in the Analyse tab's domain choice."""
    page.locator("#ink-domain label", has_text=domain).click()


def upload(page: Page, paths: Path | Sequence[Path], task: str = "painting-subject") -> None:
    """Upload ``paths`` in the Analyse tab and wait until the first one's name is in the
    status line and ``task``'s result label is shown."""
    files = [paths] if isinstance(paths, Path) else list(paths)
    page.locator("#ink-upload input[type=file]").set_input_files([str(f) for f in files])
    expect(page.locator("#ink-status")).to_contain_text(files[0].name)
    page.locator(f"#ink-summary-{task} .ink-label").wait_for(state="visible")
