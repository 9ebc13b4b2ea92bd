"""The HTML report (``--llmperf-html``): the markdown subset as HTML, the charts embedded, nothing
outside the file named, and the plugin writing it as it writes the markdown report.  In a real
browser: tests/integration/test_html_browser.py (``-m browser``)."""

from __future__ import annotations

import base64
import html.parser
import re
from pathlib import Path

import pytest

from pytest_llmperf.report.html import html_page, png_img, report_html
from pytest_llmperf.report.markdown_html import markdown_to_html, numeric_columns
from tests.unit.test_plugin import KNOWN_RESULTS_CONFTEST, TESTS, THRESHOLDS

# The smallest valid PNG: one transparent pixel.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChw"
                       "GA60e6kgAAAABJRU5ErkJggg==")


def no_image(alt: str, target: str) -> str:
    return f"[{alt}|{target}]"


class Attributes(html.parser.HTMLParser):
    """Every tag and attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [(tag, name, value or "") for name, value in attrs]


def parsed(page: str) -> Attributes:
    parser = Attributes()
    parser.feed(page)
    return parser


def assert_self_contained(page: str) -> None:
    """No script, no stylesheet link, and no attribute that names anything but a data: URI."""
    found = parsed(page)
    assert "script" not in found.tags and "link" not in found.tags
    for tag, name, value in found.attributes:
        if name in ("src", "href", "srcset", "action", "data", "poster"):
            assert value.startswith("data:"), (tag, name, value[:60])
        assert not re.search(r"(https?|ftp)://", value) or name == "content", (tag, name, value)


def test_headings_paragraphs_lists_quotes_and_inline_markup() -> None:
    out = markdown_to_html(
        "# Title `x`\n\nOne line\nanother **bold `a<b>` inside**.\n\n- item *one*\n- `x|y`\n\n"
        "> first  \n> second\n\n```\n<raw> **not bold**\n```\n", no_image)
    assert "<h1>Title <code>x</code></h1>" in out
    assert "<p>One line<br>another <strong>bold <code>a&lt;b&gt;</code> inside</strong>.</p>" \
        in out
    assert "<ul><li>item *one*</li><li><code>x|y</code></li></ul>" in out
    assert "<blockquote><p>first<br>second</p></blockquote>" in out
    assert "<pre><code>&lt;raw&gt; **not bold**</code></pre>" in out


def test_pipe_tables_as_tabulate_writes_them() -> None:
    out = markdown_to_html(
        "| metric | value | note |\n|--------|------:|------|\n"
        "| `a\\|b` | 1.5 | **FAIL** |\n| c | - | 2 ms |\n", no_image)
    assert "<thead><tr><th>metric</th><th class=\"right\">value</th><th>note</th></tr></thead>" \
        in out
    assert "<td><code>a|b</code></td><td class=\"right\">1.5</td><td><strong>FAIL</strong>" \
        in out
    # A table without headers (the environment's) has no header row.
    bare = markdown_to_html("|  |  |\n|--|--|\n| host | vm |\n", no_image)
    assert "<thead>" not in bare and "<td>host</td><td>vm</td>" in bare


def test_numbers_are_right_aligned_by_column() -> None:
    rows = [["ttft", "12.5", "3 ms", "-"], ["tpot", "-1e-3", "4", "7 %"]]
    assert numeric_columns(rows) == {1, 3}
    assert numeric_columns([["-", "x"]]) == set()


def test_images_go_through_the_renderer_and_links_name_no_url() -> None:
    out = markdown_to_html("Timeline: ![timeline](/out/t.png), see [the docs](https://x.org/a)",
                           no_image)
    assert out == "<p>Timeline: [timeline|/out/t.png], see the docs (https://x.org/a)</p>"
    assert "href" not in out


def test_the_report_embeds_its_charts_and_says_which_are_missing(tmp_path: Path) -> None:
    (tmp_path / "charts").mkdir()
    (tmp_path / "charts" / "sweep.png").write_bytes(PNG)
    markdown = ("# LLM serving performance\n\n![sweep chart](charts/sweep.png)\n\n"
                f"Timeline: ![timeline]({tmp_path}/gone.png)\n\n![remote](https://cdn.x/a.png)\n")
    page = report_html(markdown, tmp_path, "<h2>Which configuration to deploy</h2>")
    assert f'src="data:image/png;base64,{base64.b64encode(PNG).decode()}"' in page
    assert f"[timeline: {tmp_path}/gone.png not found]" in page
    assert "[remote: https://cdn.x/a.png is not a local file and is not embedded]" in page
    assert page.rstrip().endswith("<h2>Which configuration to deploy</h2>\n</body></html>")
    assert "<title>LLM serving performance</title>" in page
    assert_self_contained(page)


def test_the_page_forbids_every_fetch_and_has_a_print_stylesheet() -> None:
    page = html_page("a <title>", "<p>x</p>")
    assert page.startswith("<!DOCTYPE html>") and "<title>a &lt;title&gt;</title>" in page
    assert "default-src 'none'; img-src data:" in page
    assert "@media print" in page and "break-inside:avoid" in page
    assert png_img(Path("/nonexistent/x.png"), "x") == \
        '<span class="missing">[x: /nonexistent/x.png not found]</span>'


def test_the_configs_page_shares_the_shell(tmp_path: Path) -> None:
    from pytest_llmperf.configs import Prices
    from pytest_llmperf.configs.html import render_html

    page = render_html([], Prices.parse(()))
    assert "<h1>Which configuration to deploy</h1>" in page and "No results to compare." in page
    assert "default-src 'none'" in page
    assert_self_contained(page)


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in ("LLMPERF_BACKEND", "LLMPERF_MODEL", "LLMPERF_REQUESTS", "LLMPERF_HTML",
                 "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    pytester.makeconftest(KNOWN_RESULTS_CONFTEST)
    pytester.makefile(".toml", thresholds=THRESHOLDS)
    pytester.makepyfile(test_suite=TESTS)
    return pytester


def test_the_plugin_writes_the_same_report_as_html(
        suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMPERF_HTML", "out/report.html")
    result = suite.runpytest("--llmperf-report=out/report.md")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["HTML report: out/report.html"])
    page = (suite.path / "out" / "report.html").read_text()
    markdown = (suite.path / "out" / "report.md").read_text()
    for heading in re.findall(r"^#+ (.*)$", markdown, re.MULTILINE):
        shown = re.sub(r"`([^`]*)`", r"<code>\1</code>", heading)
        assert re.sub("<[^>]+>", "", shown) in re.sub("<[^>]+>", "", page), heading
    assert "142.3 ms" in page and "<strong>FAIL</strong>" in page and "Definitions" in page
    assert_self_contained(page)


def test_an_html_path_that_cannot_be_written_stops_pytest_before_any_test(
        suite: pytest.Pytester) -> None:
    (suite.path / "a_file").write_text("x")
    result = suite.runpytest("--llmperf-html", "a_file/report.html")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--llmperf-html (command line): cannot write " in result.stderr.str()
    assert "a_file is a file, not a directory" in result.stderr.str()


def test_an_html_report_that_cannot_be_written_is_said_and_fails_the_session(
        suite: pytest.Pytester) -> None:
    suite.makepyfile(test_suite="""
        from pathlib import Path

        def test_x(llmperf_target, llmperf_load):
            llmperf_load()
            Path("out").write_text("a file where the report's directory was")
    """)
    result = suite.runpytest("--llmperf-html", "out/report.html", "--llmperf-json", "run.json")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines([
        "llmperf: could not write the HTML report (--llmperf-html (command line))*"])
    assert (suite.path / "run.json").is_file()
