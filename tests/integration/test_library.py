"""The library without pytest: the README's example, run as a plain script against the real
embedded engine, prints what it measured and leaves no engine behind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    """The Python block of the README's "Without pytest" section."""
    section = README.read_text().split("## Without pytest", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the section holds one example"
    return str(blocks[0])


def test_the_readme_example_runs_without_pytest(tmp_path: Path) -> None:
    script = tmp_path / "measure.py"
    script.write_text(readme_example())
    # -I: no user site, no PYTHONPATH; and pytest is never imported by the library.
    code = ("import runpy, sys\nrunpy.run_path(sys.argv[1], run_name='__main__')\n"
            "assert 'pytest' not in sys.modules, 'the library imported pytest'\n")
    done = subprocess.run([sys.executable, "-I", "-c", code, str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"2 users: TPOT p95 \d+\.\d ms, \d+ output tok/s", out), out
    assert "  pass: error_rate = 0, required <= 0.01" in out, out
    assert re.search(r"sweep: \['1 user \d+ tok/s', '2 users \d+ tok/s'\]", out), out
    assert re.search(r"capacity: (max \d users|no capacity found)", out), out
    # Everything the script started is gone with its with-block.
    left = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and "xllamacpp_server" in " ".join(p.info["cmdline"])
            and str(tmp_path) in " ".join(p.info["cmdline"])]
    assert not left, left
