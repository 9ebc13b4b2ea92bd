"""The docs cannot drift: the options reference is generated from the option table and holds
every flag ``pytest --help`` lists, README.md stays short, and no relative link or doc pointer
names a file that is not there.  (``mkdocs build --strict`` in .ci/run checks the site too.)"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pytest_llmperf.settings.options import OPTIONS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
MARKDOWN = [README, ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llmperf_docs_options_hook",
                                                  DOCS / "hooks" / "options.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference() -> str:
    rendered: str = _hook().render_options()
    return rendered


def _help_sections() -> dict[str, list[str]]:
    """``pytest --help`` of this repository, cut into its sections (a header line, flush left,
    ending in a colon, then the indented lines under it)."""
    done = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in done.stdout.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            current = sections.setdefault(line.strip(), [])
        else:
            current.append(line)
    return sections


def _listed_flags(lines: list[str]) -> set[str]:
    """The flags an option line of ``--help`` names ("  --gpus=GPUS, --llmperf-gpus=GPUS  help")."""
    flags: set[str] = set()
    for line in lines:
        spec = re.match(r"^ {1,4}(-\S.*?)(?: {2,}|$)", line)
        if spec:
            flags.update(re.findall(r"--[A-Za-z0-9][\w-]*", spec.group(1)))
    return flags


def test_reference_renders_every_option_of_the_table(reference: str) -> None:
    hook = _hook()
    for option in OPTIONS:
        for spelling in hook.spellings(option):
            assert f"`{spelling}`" in reference, spelling
        assert f"`{option.env}`" in reference and f"`{option.ini}`" in reference, option.name
        if option.default is not None:
            assert f"`{option.default}`" in reference, option.name
    groups = {group for option in OPTIONS for group in option.groups}
    headings = re.findall(r"^## (.+)$", reference, flags=re.MULTILINE)
    assert len(headings) == len(groups | ({"other"} if any(not o.groups for o in OPTIONS)
                                          else set()))


def test_reference_holds_every_flag_pytest_help_lists(reference: str) -> None:
    sections = _help_sections()
    ours = [lines for header, lines in sections.items() if "llmperf" in header.lower()]
    assert ours, f"no llmperf group in pytest --help: {sorted(sections)}"
    flags = set().union(*(_listed_flags(lines) for lines in ours))
    assert any(flag.startswith("--llmperf-") for flag in flags)
    missing = sorted(flag for flag in flags if f"`{flag}`" not in reference)
    assert not missing, f"pytest --help lists flags the options reference lacks: {missing}"
    ini = [lines for header, lines in sections.items() if "ini-options" in header]
    listed_ini = {m.group(1) for lines in ini for line in lines
                  if (m := re.match(r"^ {2}(llmperf_\w+)", line))}
    missing_ini = sorted(name for name in listed_ini if f"`{name}`" not in reference)
    assert not missing_ini, missing_ini


def test_options_page_is_generated_not_copied() -> None:
    assert _hook().MARKER in (DOCS / "options.md").read_text(encoding="utf-8")
    assert "docs/hooks/options.py" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    copied = [f"{path.name}: {line}" for path in MARKDOWN
              for line in path.read_text(encoding="utf-8").splitlines()
              if re.match(r"^\|\s*`--", line)]
    assert not copied, f"a hand-written options table row (the reference is generated): {copied}"


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move the detail into docs/"


def _slug(heading: str) -> str:
    """The anchor MkDocs' toc gives a heading (lower case, punctuation dropped, spaces to -)."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"[\s]+", "-", text)


def _anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    hook = _hook()
    if hook.MARKER in text:  # the options page: its headings are generated at build time
        text = text.replace(hook.MARKER, hook.render_options())
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+?)\s*$", text, flags=re.MULTILINE)}


def _without_code(text: str) -> str:
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_files_that_exist(path: Path) -> None:
    text = _without_code(path.read_text(encoding="utf-8"))
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        missing_anchor = bool(anchor) and linked.suffix == ".md" and linked.exists() \
            and anchor not in _anchors(linked)
        if not linked.exists() or missing_anchor:
            broken.append(target)
    assert not broken, f"{path.name}: links to nothing: {broken}"


def test_thresholds_doc_pointers_name_pages_that_exist() -> None:
    text = (ROOT / "thresholds.toml").read_text(encoding="utf-8")
    assert "README.md (" not in text and '"Telemetry"' not in text
    pointers = re.findall(r"(docs/[\w./-]+\.md)(?:#([\w-]+))?", text)
    assert pointers, "thresholds.toml should point to the metrics reference in docs/"
    for page, anchor in pointers:
        assert (ROOT / page).is_file(), page
        if anchor:
            assert anchor in _anchors(ROOT / page), f"{page}#{anchor}"
