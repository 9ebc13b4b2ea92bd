"""The HTML reports in a real headless browser: Debian's Chromium, driven by playwright (from
PyPI; its own browser download is never used).  One plugin session over two "hosts" (popen
workers named like hosts) measures the stub, sweep included, and writes ``--llmperf-html``;
``python -m pytest_llmperf configs`` turns the session's document into its page.  Each page
must load with no console error and no request leaving the file, every chart must decode, the
page must print to PDF, and its screenshot must show something drawn.

Not in the default run (``-m browser``; .ci/run installs chromium and runs it with
``LLMPERF_BROWSER_TESTS=required``, so that CI fails rather than skips without it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.stub_process import running_stub

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A fresh Chromium's context, or a skip without Chromium."""
    missing = None if CHROMIUM.is_file() else f"{CHROMIUM} not installed (apt-get install " \
                                               "chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = missing or "playwright not installed (pip install -e '.[dev]')"
    if missing:
        if os.environ.get("LLMPERF_BROWSER_TESTS") == "required":
            pytest.fail(missing)
        pytest.skip(missing)
    with sync_playwright() as playwright:
        # launch() gives the browser a fresh temporary user data dir of its own.
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium.new_context(viewport={"width": 1280, "height": 900})
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def session_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plugin session over two hosts against the stub: concurrency and a sweep on each."""
    suite = tmp_path_factory.mktemp("suite")
    shutil.copytree(REPO / "tests" / "perf", suite / "perf")
    (suite / "thresholds.toml").write_text(
        '[defaults]\nslo = ["tpot_ms.mean < 1000", "error_rate <= 0"]\n')
    (suite / "pytest.ini").write_text("[pytest]\n")
    with running_stub("--token-ms", "3", "--first-ms", "10") as url:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "perf/test_concurrency.py", "perf/test_sweep.py",
             "-p", "no:cacheprovider", "--backend", "openai", "--model", "stub",
             "--base-url", url, "--llmperf-requests=8", "--llmperf-warmup=1",
             "--llmperf-max-tokens=16", "--llmperf-report=report.md",
             "--llmperf-html=report.html", "--dist", "each",
             "--tx", "popen//id=gpu-a", "--tx", "popen//id=gpu-b"],
            cwd=suite, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "HTML report: report.html" in run.stdout
    configs = subprocess.run(
        [sys.executable, "-m", "pytest_llmperf", "configs",
         str(suite / "llmperf-output" / "results.json"), "--html", "configs/configs.html"],
        cwd=suite, capture_output=True, text=True, timeout=120, check=False)
    assert configs.returncode == 0, configs.stdout + configs.stderr
    return suite


def look(context: Any, page_file: Path, screenshot: Path) -> dict[str, Any]:
    """Open ``page_file``; what the browser said and fetched, the images, a PDF and a
    screenshot."""
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda r: requests.append(r.url))
    url = page_file.as_uri()
    page.goto(url, wait_until="load")
    widths = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.naturalWidth])")
    page.screenshot(path=str(screenshot), full_page=True)
    text = page.inner_text("body")
    pdf = page.pdf(format="A4", print_background=True)
    # As printed on A4 (about 700 CSS px inside the margins): every chart and table within
    # the page.
    page.emulate_media(media="print")
    page.set_viewport_size({"width": 700, "height": 1000})
    overflowing = page.eval_on_selector_all(
        "img, table", "els => els.filter(e => e.getBoundingClientRect().right > 701)"
                      ".map(e => e.alt || e.innerText.slice(0, 80))")
    page.screenshot(path=str(screenshot.with_suffix(".print.png")), full_page=True)
    page.close()
    return {"url": url, "errors": errors, "requests": requests, "images": widths, "pdf": pdf,
            "text": text, "overflowing": overflowing}


def assert_self_contained(seen: dict[str, Any], images: int) -> None:
    assert seen["errors"] == []
    outside = [r for r in seen["requests"] if r != seen["url"] and not r.startswith("data:")]
    assert outside == []
    assert len(seen["images"]) == images
    assert all(width > 0 for _alt, width in seen["images"]), seen["images"]
    assert seen["pdf"].startswith(b"%PDF") and len(seen["pdf"]) > 10_000
    assert seen["overflowing"] == []


def assert_drawn(screenshot: Path) -> None:
    """The screenshot holds text and charts: many colours, not one background."""
    import matplotlib.image

    pixels = matplotlib.image.imread(str(screenshot))
    colours = {tuple(p) for p in pixels[::7, ::7].reshape(-1, pixels.shape[-1]).tolist()}
    assert len(colours) > 50, len(colours)


def test_the_session_html_report_loads_alone_and_draws_its_charts(
        browser: Any, session_run: Path, tmp_path: Path) -> None:
    html = (session_run / "report.html").read_text()
    assert "<script" not in html and "<link" not in html and "http://" not in html.replace(
        "OpenAI-compatible server at http://", "")
    shot = tmp_path / "report.png"
    seen = look(browser, session_run / "report.html", shot)
    # The two hosts' sweep charts and the comparison's Pareto chart.
    assert_self_contained(seen, images=3)
    text = seen["text"]
    for wanted in ("LLM serving performance", "Environment", "Hosts", "gpu-a", "gpu-b",
                   "test_concurrent_users[openai-stub-users4@gpu-a]", "Sweep:",
                   "tpot_ms.mean", "Definitions", "Which configuration to deploy"):
        assert wanted in text, wanted
    assert_drawn(shot)


def test_the_configs_page_loads_alone_and_draws_its_chart(
        browser: Any, session_run: Path, tmp_path: Path) -> None:
    shot = tmp_path / "configs.png"
    seen = look(browser, session_run / "configs" / "configs.html", shot)
    assert_self_contained(seen, images=1)
    assert "Which configuration to deploy" in seen["text"] and "gpu-b" in seen["text"]
    assert_drawn(shot)
