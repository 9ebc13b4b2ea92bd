"""llama.cpp as an external ``llama-server`` process (``--llamacpp-bin``).

"The binary" here is a shell script that execs our xllamacpp launcher, which takes
llama-server's own flags: the suite runs against it exactly as against a real llama-server,
through the same launch, readiness and teardown path, with the same command line that the
embedded engine gets.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_llmperf.engines.catalog import ModelSource, builtin_catalog
from pytest_llmperf.engines.llamacpp import LlamaCppBackend
from pytest_llmperf.settings.resolve import resolve_settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FAST = ["--llmperf-requests=4", "--llmperf-warmup=1", "-p", "no:cacheprovider"]
LAUNCHER = "pytest_llmperf.engines.xllamacpp_server"


@pytest.fixture
def suite_copy(tmp_path: Path) -> Path:
    suite = tmp_path / "suite"
    shutil.copytree(REPO / "tests" / "perf", suite / "perf")
    # Only what does not depend on how busy the shared CPUs are: every request answered.
    (suite / "thresholds.toml").write_text(
        '[defaults]\nslo = ["error_rate <= 0", "ttft_ms.p95 < 600000"]\n'
    )
    (suite / "pytest.ini").write_text("[pytest]\n")
    return suite


@pytest.fixture
def llama_server(tmp_path: Path) -> Path:
    """An executable ``llama-server`` that records its pid (exec keeps it) in ``pids``."""
    script = tmp_path / "bin" / "llama-server"
    script.parent.mkdir()
    pids = tmp_path / "pids"
    script.write_text(
        "#!/bin/sh\n"
        f"echo $$ >> {shlex.quote(str(pids))}\n"
        f'exec {shlex.quote(sys.executable)} -m {LAUNCHER} "$@"\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("LLMPERF_CACHE_DIR", "/tmp/llmperf-cache")
    return env


def _running(pid: int) -> bool:
    """Running (a zombie is not) and still our launcher (not a reused pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and LAUNCHER.encode() in cmdline


def test_suite_passes_against_an_external_llama_server(
    suite_copy: Path, llama_server: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "perf/test_latency.py", "perf/test_concurrency.py",
         "--llamacpp-bin", str(llama_server), *FAST,
         "--llmperf-report=report.md"],
        cwd=suite_copy, capture_output=True, text=True, timeout=300, check=False, env=_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout

    # The report names the external server and the version it printed for --version.
    report = (suite_copy / "report.md").read_text()
    assert re.search(r"llama-server \(version: xllamacpp [\w.]+", report), report

    # The server's log is kept under the session's output directory.
    logs = list((suite_copy / "llmperf-output").glob("llamacpp-*.log"))
    assert len(logs) == 1, logs
    assert "pytest-llmperf: serving" in logs[0].read_text(errors="replace")

    # Launched twice: `llama-server --version`, then the server itself; neither is left.
    pids = [int(line) for line in (llama_server.parent.parent / "pids").read_text().split()]
    assert len(pids) == 2, pids
    assert [pid for pid in pids if _running(pid)] == []


def test_missing_binary_is_a_usage_error_before_any_server(suite_copy: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "perf", "--llamacpp-bin", "/nonexistent", *FAST],
        cwd=suite_copy, capture_output=True, text=True, timeout=120, check=False, env=_env(),
    )
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("ERROR: ")
    assert "/nonexistent" in errors[0]
    assert "--llamacpp-bin" in errors[0]
    assert not (suite_copy / "llmperf-output").exists()  # no server was launched


def test_embedded_and_external_launch_share_the_command_line(
    tmp_path: Path, llama_server: Path
) -> None:
    model = builtin_catalog().resolve("smollm2-135m", "test")
    source = ModelSource("gguf", str(tmp_path / "model.gguf"))
    backend = LlamaCppBackend()
    embedded = backend.launch(resolve_settings({}, {}, {}, tmp_path).server, model, source,
                              4321, 1)
    external_settings = resolve_settings({"llamacpp_bin": str(llama_server)}, {}, {},
                                         tmp_path).server
    external = backend.launch(external_settings, model, source, 4321, 1)

    program = (sys.executable, "-m", LAUNCHER, "--parent-pid", str(os.getpid()))
    assert embedded.argv[: len(program)] == program
    assert external.argv[0] == str(llama_server)
    assert embedded.argv[len(program):] == external.argv[1:]
    args = external.argv[1:]
    for flag, value in [("-m", source.id), ("--host", "127.0.0.1"), ("--port", "4321"),
                        ("--parallel", "8"), ("-ngl", "0")]:
        assert args[args.index(flag) + 1] == value
    assert int(args[args.index("-c") + 1]) >= 8 * 2048  # the total context of 8 slots
    assert "--metrics" in args
    assert "--cont-batching" in args
