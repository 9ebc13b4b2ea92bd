"""A real Xinference on CPU, launched by the plugin, driven by the shipped suite's concurrency
test the way a user runs it: ``pytest tests/perf -k test_concurrent_users --backend
xinference``.

Opt-in (a minute or two; the first setup takes minutes and 2 GB): ``.ci/xinference-env``
builds Xinference's virtualenv once and prints the variable that names its interpreter::

    eval "$(.ci/xinference-env)"
    pytest -m xinference -rA tests/integration/test_xinference_cpu.py

The session must pass, its report must show Xinference's own figures (its TTFT histogram,
its token counters, which must equal the client's), and no process of Xinference (its
supervisor, worker or model process) may outlive the session.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest

from pytest_llmperf.settings.parsers import per_backend_path
from pytest_llmperf.store.documents import load_run

PYTHON_ENV = "LLMPERF_ENGINE_PYTHON"


def _xinference_python() -> Path | None:
    value = os.environ.get(PYTHON_ENV, "")
    try:
        return per_backend_path(value).get("xinference") if "xinference" in value else None
    except ValueError:
        return None


pytestmark = [
    pytest.mark.integration,
    pytest.mark.xinference,
    pytest.mark.skipif(
        _xinference_python() is None,
        reason=f"Xinference test: set {PYTHON_ENV}='xinference: PATH', e.g. "
        '`eval "$(.ci/xinference-env)"` (builds a 2 GB venv once)'),
]

REPO = Path(__file__).resolve().parents[2]


def _xinference_processes(venv: Path) -> list[str]:
    """Every process running a program of Xinference's virtualenv."""
    alive = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            command = " ".join(proc.info["cmdline"] or ())
        except psutil.Error:
            continue
        if str(venv) in command or "xinf-api-" in command or command.startswith("Model: "):
            alive.append(f"{proc.info['pid']}: {command[:200]}")
    return alive


def test_concurrency_suite_on_xinference_cpu(tmp_path: Path) -> None:
    python = _xinference_python()
    assert python is not None
    shutil.copytree(REPO / "tests" / "perf", tmp_path / "perf")
    shutil.copy(REPO / ".ci" / "thresholds-cpu.toml", tmp_path / "thresholds.toml")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "perf", "-k", "test_concurrent_users",
         "-p", "no:cacheprovider", "--backend", "xinference", "--llmperf-output-dir", "out",
         "--llmperf-json", "result.json", "--llmperf-report", "report.md",
         "--junitxml", "junit.xml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=1200, check=False,
        env={**os.environ, "GITHUB_STEP_SUMMARY": ""})
    out = done.stdout + done.stderr
    logs = "".join(log.read_text(errors="replace")[-3000:]
                   for log in sorted((tmp_path / "out").glob("xinference-*.log")))
    assert done.returncode == 0, f"{out}\n--- xinference log (tail) ---\n{logs}"
    assert "1 passed" in done.stdout, out
    print(done.stdout[max(0, done.stdout.find("= llmperf results")):])  # shown with -rA
    assert not _xinference_processes(python.parent.parent), "left running"

    (recorded,) = load_run(tmp_path / "result.json").windows
    window = recorded.window
    assert window.served.engine.startswith("xinference 4.")
    assert window.served.startup_s is not None and window.served.first_ttft_ms is not None
    server = window.server_metrics or {}
    client_input, client_output = window.client_tokens
    # Xinference's own counters moved by exactly what the measured requests' usage said.
    assert server.get("generation_tokens") == client_output
    assert server.get("prompt_tokens") == client_input
    assert server.get("server_ttft_ms_mean", 0) > 0
    report = (tmp_path / "report.md").read_text()
    assert "`xinference:time_to_first_token_seconds`" in report
    props = {p.get("name"): p.get("value")
             for p in ET.parse(tmp_path / "junit.xml").iter("property")}
    assert float(props["llmperf.startup_s"] or 0) > 0
    assert re.match(r"xinference 4\.", props["llmperf.engine"] or "")
