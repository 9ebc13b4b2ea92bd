"""The plugin as pytest sees it: options, precedence, SLO failures, junit and markdown output.

The inner test runs measure nothing: their conftest replaces ``llmperf_load`` with hand-made
results of known value, so what is checked here is the plugin's handling of them.  The same
path against the real engine is in tests/integration/test_suite_end_to_end.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

KNOWN_RESULTS_CONFTEST = '''
import pytest
from pytest_llmperf import LoadRun, LoadShape, RequestRecord, TokenSource, WindowResult
from pytest_llmperf.results.resources import MeanPeak, Resources, ServerUse, SystemUse
from pytest_llmperf.results.served import ServedInfo

MS = 1_000_000


def record(i, tpot_ms):
    """TTFT 200 ms, then 9 more tokens tpot_ms apart: 10 tokens in all."""
    send = i * 10_000 * MS
    chunks = tuple(send + 200 * MS + int(k * tpot_ms * MS) for k in range(10))
    return RequestRecord(i, send, chunks, chunks[-1], 10, TokenSource.USAGE, 20,
                         TokenSource.USAGE, "length")


@pytest.fixture
def llmperf_load(llmperf_recorder, llmperf_target):
    # A load of the user's own making: recorded as the plugin's own are.
    served = ServedInfo(llmperf_target.backend, llmperf_target.model, "xllamacpp 2026.10.1")

    def load(*, users=1, tpot_ms=20.0, **_):
        records = tuple(record(i, tpot_ms) for i in range(64))
        run = LoadRun(records, 0, records[-1].end_ns, users, 0)
        result = WindowResult(served, LoadShape.closed(users), 10, run)
        llmperf_recorder.record_window(result, None)
        return result

    return load
'''

THRESHOLDS = """
[defaults]
slo = [
    "tpot_ms.p95 < 100",
    "decode_tokens_per_s.mean >= 10",
    "error_rate <= 0.01",
]
"""

TESTS = """
def test_fast(llmperf_target, llmperf_load, llmperf_slo):
    llmperf_slo.check(llmperf_load(tpot_ms=20.0))

def test_slow(llmperf_target, llmperf_load, llmperf_slo):
    llmperf_slo.check(llmperf_load(tpot_ms=142.3))
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in ("LLMPERF_BACKEND", "LLMPERF_MODEL", "LLMPERF_REQUESTS", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    pytester.makeconftest(KNOWN_RESULTS_CONFTEST)
    pytester.makefile(".toml", thresholds=THRESHOLDS)
    pytester.makepyfile(test_suite=TESTS)
    return pytester


def test_missed_slo_fails_only_that_test_with_the_documented_message(
    suite: pytest.Pytester,
) -> None:
    result = suite.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*test_slow*",
        "tpot_ms.p95 = 142.3 ms, required < 100 ms (missed by 42.3 ms) -- 64 requests at 1 user, "
        "smollm2-135m on llamacpp (xllamacpp 2026.10.1)",
    ])
    # decode speed 1000/142.3 = 7.03 tok/s misses ">= 10" too, and says by how much
    result.stdout.fnmatch_lines([
        "decode_tokens_per_s.mean = 7.03 tok/s, required >= 10 tok/s (missed by 2.97 tok/s)*",
    ])
    assert "error_rate =" not in result.stdout.str()  # passing checks stay quiet


def test_test_ids_name_backend_and_model(suite: pytest.Pytester) -> None:
    result = suite.runpytest("-v")
    result.stdout.fnmatch_lines(["*test_fast?llamacpp-smollm2-135m? PASSED*"])


def test_junit_has_metrics_and_verdicts_as_properties(suite: pytest.Pytester) -> None:
    suite.runpytest("--junitxml=junit.xml")
    tree = ET.parse(suite.path / "junit.xml")
    cases = {case.get("name"): case for case in tree.iter("testcase")}
    slow = cases["test_slow[llamacpp-smollm2-135m]"]
    props = {p.get("name"): p.get("value") for p in slow.iter("property")}
    assert float(props["llmperf.tpot_ms.p95"]) == pytest.approx(142.3, abs=0.01)
    assert float(props["llmperf.ttft_ms.mean"]) == pytest.approx(200.0, abs=0.01)
    assert props["llmperf.token_source"] == "usage"
    assert props["llmperf.slo[tpot_ms.p95 < 100]"].startswith("fail: tpot_ms.p95 = 142.3 ms")
    assert props["llmperf.slo[error_rate <= 0.01]"].startswith("pass")


def test_markdown_report_and_github_summary(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = suite.path / "step-summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = suite.runpytest("--llmperf-report=out/report.md")
    report = (suite.path / "out" / "report.md").read_text()
    assert "## Environment" in report
    assert "xllamacpp 2026.10.1" in report
    assert "| tpot_ms.p95 " in report and "142.3 ms" in report and "**FAIL**" in report
    assert "thresholds.toml:4" in report  # where the missed SLO was defined
    assert summary.read_text() == "earlier step\n" + report
    result.stdout.fnmatch_lines(["*llmperf results*", "*test_slow*1/3 pass*"])


def test_cli_beats_env_beats_ini(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    suite.makeini("[pytest]\nllmperf_requests = 7\nllmperf_warmup = 3\nllmperf_max_tokens = 9\n")
    suite.makepyfile(test_settings="""
        def test_settings(llmperf_settings):
            s = llmperf_settings
            assert (s.load.requests, s.load.warmup, s.load.max_tokens) == (5, 2, 9), s
            assert s.server.max_tokens == 9  # llama.cpp sizes its slots for it
            assert s.sources["requests"] == "--llmperf-requests (command line)"
            assert s.sources["warmup"] == "LLMPERF_WARMUP (environment)"
            assert s.sources["max_tokens"] == "llmperf_max_tokens (ini/pyproject)"
    """)
    monkeypatch.setenv("LLMPERF_REQUESTS", "6")
    monkeypatch.setenv("LLMPERF_WARMUP", "2")
    result = suite.runpytest("--llmperf-requests=5", "test_settings.py")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--llmperf-requests=abc"], {}, "--llmperf-requests (command line): invalid value 'abc'"),
        ([], {"LLMPERF_WARMUP": "-1"}, "LLMPERF_WARMUP (environment): invalid value '-1'"),
        (["--backend=trt"], {}, "--backend (command line): invalid value 'trt'"),
        (["--backend=openai"], {}, "give its URL with --base-url"),
        (["--model=nope.gguf"], {},
         "--model (command line): GGUF file nope.gguf of model 'nope.gguf' does not exist"),
        (["--thresholds=missing.toml"], {}, "thresholds file"),
    ],
)
def test_bad_values_are_usage_errors_naming_their_source(
    suite: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    expected: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = suite.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert expected in result.stderr.str()


def test_bad_thresholds_fail_before_any_test_with_file_and_line(suite: pytest.Pytester) -> None:
    suite.makefile(".toml", thresholds='[defaults]\nslo = [\n  "tpot_ms.p95 < 100",\n'
                                       '  "tpot_ms.p42x < 1",\n]\n')
    result = suite.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "thresholds.toml:4" in result.stderr.str()
    assert "unknown statistic 'p42x'" in result.stderr.str()


def test_missing_thresholds_file_fails_the_check_not_the_session(suite: pytest.Pytester) -> None:
    (suite.path / "thresholds.toml").unlink()
    result = suite.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*no thresholds file*thresholds.toml does not exist*"])


def test_entry_module_imports_nothing_heavy() -> None:
    code = (
        "import sys, pytest_llmperf.plugin.hooks, pytest_llmperf.plugin.fixtures\n"
        "heavy = {'aiohttp', 'httptools', 'pynvml', 'xllamacpp', 'requests', 'tabulate',"
        " 'psutil'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_public_api_is_what_all_says() -> None:
    import pytest_llmperf

    public = {name for name in vars(pytest_llmperf) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(pytest_llmperf, name)).__name__ == "module"}
    loaded_now = public - modules - {"annotations", "TYPE_CHECKING"}
    # The rest load when first used (they need the client stack or numpy).
    assert loaded_now | set(pytest_llmperf._LAZY) == set(pytest_llmperf.__all__)
    for name in pytest_llmperf.__all__:
        assert getattr(pytest_llmperf, name).__module__.startswith("pytest_llmperf.")
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        pytest_llmperf.Nope  # noqa: B018


NO_GPU_CONFTEST = KNOWN_RESULTS_CONFTEST.replace(
    "        result = WindowResult(served, LoadShape.closed(users), 10, run)",
    '''        resources = Resources(
            ServerUse("launched server", 4242, rss_mib=MeanPeak(500.0, 512.0)), SystemUse(),
            gpu_unavailable_reason="no NVIDIA GPU: NVML Shared Library Not Found",
            metrics={"server_rss_peak_mib": 512.0})
        result = WindowResult(served, LoadShape.closed(users), 10, run, resources=resources)''')

GPU_THRESHOLDS = """
[defaults]
slo = ["error_rate <= 0.01", "gpu_memory_peak_mib < 70000", "server_rss_peak_mib < 8000"]
"""


@pytest.fixture
def no_gpu_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in ("LLMPERF_BACKEND", "LLMPERF_MODEL", "LLMPERF_REQUIRE_GPU"):
        monkeypatch.delenv(name, raising=False)
    pytester.makeconftest(NO_GPU_CONFTEST)
    pytester.makefile(".toml", thresholds=GPU_THRESHOLDS)
    pytester.makepyfile(test_suite=TESTS.split("def test_slow")[0])
    return pytester


def test_gpu_slo_without_a_gpu_is_skipped_and_says_why(no_gpu_suite: pytest.Pytester) -> None:
    result = no_gpu_suite.runpytest("--llmperf-report=report.md", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    report = (no_gpu_suite.path / "report.md").read_text()
    assert re.search(r"\| gpu_memory_peak_mib +\| - +\| < 70000 MiB \| skipped \(no NVIDIA GPU: "
                     r"NVML Shared Library Not Found\)", report)
    assert "GPU: no NVIDIA GPU: NVML Shared Library Not Found (GPU metrics absent)." in report
    assert "| server RSS (MiB) |    500 |    512 |" in report
    props = {p.get("name"): p.get("value")
             for p in ET.parse(no_gpu_suite.path / "junit.xml").iter("property")}
    assert props["llmperf.slo[gpu_memory_peak_mib < 70000]"].startswith(
        "skip: gpu_memory_peak_mib skipped: no NVIDIA GPU")
    assert props["llmperf.resources.server_rss_peak_mib"] == "512.0"
    assert "llmperf.resources.gpu_memory_peak_mib" not in props  # absent, not zero


def test_require_gpu_makes_the_gpu_slo_fail(no_gpu_suite: pytest.Pytester) -> None:
    result = no_gpu_suite.runpytest("--llmperf-require-gpu=yes")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "gpu_memory_peak_mib not measured: no NVIDIA GPU: NVML Shared Library Not Found, "
        "required < 70000 MiB -- 64 requests at 1 user, *",
    ])


DEAD_SERVER_CONFTEST = """
import dataclasses

import pytest
from pytest_llmperf import LoadRun, RequestRecord, ServedModel, WindowResult
from pytest_llmperf.bench import open_bench
from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.lifecycle import ServerOutOfMemory


def died():
    raise ServerOutOfMemory("vllm ran out of GPU memory: torch.OutOfMemoryError: CUDA out of "
                            "memory. Tried to allocate 2.00 GiB", "torch.OutOfMemoryError")


@pytest.fixture(scope="session")
def llmperf_server(llmperf_target):
    return ServedModel(llmperf_target.backend, llmperf_target.model,
                       Endpoint("http://127.0.0.1:9/v1", "m"), engine="vllm 0.11.0",
                       check_alive=died)


@pytest.fixture(scope="session")
def llmperf_bench(llmperf_server, llmperf_prompts, llmperf_settings):
    # What the load sees once the server is gone: every request refused.
    def refused(served, prompts, *, shape, requests, **_):
        records = tuple(RequestRecord(i, 0, end_ns=1, error="ClientConnectorError: refused")
                        for i in range(requests))
        return WindowResult(served.info, shape, 10, LoadRun(records, 0, 1, shape.users, 0))

    bench = open_bench(llmperf_server, llmperf_prompts, None, llmperf_settings)
    return dataclasses.replace(bench, runner=refused)
"""


def test_a_server_that_died_under_load_fails_with_its_own_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLMPERF_BACKEND", raising=False)
    monkeypatch.delenv("LLMPERF_MODEL", raising=False)
    pytester.makeconftest(DEAD_SERVER_CONFTEST)
    pytester.makefile(".toml", thresholds=THRESHOLDS)
    pytester.makepyfile(test_suite="""
def test_load(llmperf_load, llmperf_slo):
    llmperf_slo.check(llmperf_load(users=2, requests=4))
""")
    result = pytester.runpytest("--junitxml=junit.xml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "smollm2-135m on llamacpp (vllm 0.11.0): vllm ran out of GPU memory: "
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
        '4 of 4 requests failed: server_died 4 (e.g. "ClientConnectorError: refused")',
    ])
    # The window the death cost is recorded, its requests counted under their kind.
    properties = {p.get("name"): p.get("value")
                  for p in ET.parse(pytester.path / "junit.xml").iter("property")}
    assert properties["llmperf.errors.server_died"] == "4.0"
    assert properties["llmperf.errors.connection"] == "0.0"


MARKED_TESTS = """
import pytest

@pytest.mark.llmperf(requests=16, warmup=0, inconclusive="fail")
def test_marked(llmperf_target, llmperf_test_bench, llmperf_settings):
    # The test's own settings; the session's stay as they were for every other test.
    assert (llmperf_test_bench.load.requests, llmperf_test_bench.load.warmup) == (16, 0)
    assert llmperf_test_bench.checks.inconclusive == "fail"
    assert llmperf_settings.load.requests == 64

def test_unmarked(llmperf_target, llmperf_test_bench):
    assert llmperf_test_bench.load.requests == 64

def test_plain():
    pass
"""

BENCH_STUB = """
import pytest
from pytest_llmperf import ServedModel
from pytest_llmperf.bench import open_bench

@pytest.fixture(scope="session")
def llmperf_bench(llmperf_target, llmperf_settings):
    from pytest_llmperf.prompts.builtin import BuiltinPrompts

    served = ServedModel(llmperf_target.backend, llmperf_target.model, None, engine="none")
    return open_bench(served, BuiltinPrompts(), None, llmperf_settings)
"""


def test_every_perf_test_carries_the_llmperf_marker(pytester: pytest.Pytester,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LLMPERF_BACKEND", "LLMPERF_MODEL", "LLMPERF_REQUESTS", "LLMPERF_WARMUP"):
        monkeypatch.delenv(name, raising=False)
    pytester.makeconftest(BENCH_STUB)
    pytester.makefile(".toml", thresholds=THRESHOLDS)
    pytester.makepyfile(test_suite=MARKED_TESTS)
    selected = pytester.runpytest("-m", "llmperf", "-v")
    selected.assert_outcomes(passed=2, deselected=1)
    selected.stdout.fnmatch_lines(["*test_marked*PASSED*", "*test_unmarked*PASSED*"])
    assert "test_plain" not in selected.stdout.str()
    pytester.runpytest("-m", "not llmperf").assert_outcomes(passed=1, deselected=2)


@pytest.mark.parametrize(("marker", "expected"), [
    ("requests=0", "test_suite.py::test_bad[llamacpp-smollm2-135m]: @pytest.mark.llmperf"
                   "(requests=0): expected a whole number >= 1"),
    ("gpus='0,1'", "@pytest.mark.llmperf(gpus=...): not a setting a test can change; "
                   "these can be: "),
    ("no_such=1", "@pytest.mark.llmperf(no_such=...): not a setting a test can change"),
])
def test_a_bad_marker_setting_stops_pytest_naming_the_test(pytester: pytest.Pytester,
                                                           marker: str, expected: str) -> None:
    pytester.makeconftest(BENCH_STUB)
    pytester.makefile(".toml", thresholds=THRESHOLDS)
    pytester.makepyfile(test_suite=f"""
import pytest

@pytest.mark.llmperf({marker})
def test_bad(llmperf_target, llmperf_load):
    raise AssertionError("must not run")
""")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert expected in result.stderr.str()


HOOKS_CONFTEST = KNOWN_RESULTS_CONFTEST + '''

def pytest_llmperf_fingerprint(config, fingerprint):
    fingerprint["rack"] = "b12"


def pytest_llmperf_result_document(config, document, extra):
    extra["windows_seen"] = len(document.windows)
    extra["ci_job"] = "job-7"
'''


def test_hooks_extend_the_fingerprint_and_the_result_document(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LLMPERF_BACKEND", "LLMPERF_MODEL"):
        monkeypatch.delenv(name, raising=False)
    pytester.makeconftest(HOOKS_CONFTEST)
    pytester.makefile(".toml", thresholds=THRESHOLDS)
    pytester.makepyfile(test_suite=TESTS)
    pytester.runpytest("--llmperf-save", "hooked").assert_outcomes(passed=1, failed=1)
    from pytest_llmperf.store.documents import load_run

    (saved,) = (pytester.path / ".llmperf").glob("0001_hooked.json")
    document = load_run(saved)
    assert document.fingerprint["rack"] == "b12"
    assert dict(document.extra) == {"windows_seen": 2, "ci_job": "job-7"}
    assert len(document.windows) == 2
