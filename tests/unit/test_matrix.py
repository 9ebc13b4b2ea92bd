"""The backend x model matrix: test ids, skips with reasons, one server at a time, usage errors.

The inner runs replace ``llmperf_server`` with one that only logs when it would start and stop,
and name an "engine python" that answers every import probe, so that the engines' checks pass
on this machine without the engines installed.
"""

from __future__ import annotations

import pytest

LOGGING_SERVER_CONFTEST = '''
import os
import pytest

@pytest.fixture(scope="session")
def llmperf_server(llmperf_target):
    log = os.environ["SERVER_EVENTS"]
    with open(log, "a") as f:
        f.write(f"start {llmperf_target.id}\\n")
    yield llmperf_target
    with open(log, "a") as f:
        f.write(f"stop {llmperf_target.id}\\n")
'''

TESTS = """
def test_one(llmperf_server):
    pass

def test_two(llmperf_server):
    pass
"""


@pytest.fixture
def matrix(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in ("LLMPERF_BACKEND", "LLMPERF_MODEL", "LLMPERF_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SERVER_EVENTS", str(pytester.path / "events.log"))
    pytester.makeconftest(LOGGING_SERVER_CONFTEST)
    pytester.makepyfile(test_suite=TESTS)
    fake_python = pytester.path / "engine-python"
    fake_python.write_text("#!/bin/sh\nexit 0\n")  # "yes, that module is installed"
    fake_python.chmod(0o755)
    return pytester


def events(pytester: pytest.Pytester) -> list[str]:
    return (pytester.path / "events.log").read_text().splitlines()


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-v", "-p", "no:cacheprovider",
                              f"--llmperf-engine-python={pytester.path / 'engine-python'}",
                              *args)


def test_ids_name_backend_and_model_and_each_server_starts_once(
    matrix: pytest.Pytester,
) -> None:
    result = run(matrix, "--backend", "vllm,sglang", "--model", "qwen72b-gptq,qwen32b-gptq")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["*test_one?vllm-qwen72b-gptq? PASSED*",
                                 "*test_two?sglang-qwen32b-gptq? PASSED*"])
    # Grouped by target: every server starts once and stops before the next one starts.
    assert events(matrix) == [
        "start vllm-qwen72b-gptq", "stop vllm-qwen72b-gptq",
        "start vllm-qwen32b-gptq", "stop vllm-qwen32b-gptq",
        "start sglang-qwen72b-gptq", "stop sglang-qwen72b-gptq",
        "start sglang-qwen32b-gptq", "stop sglang-qwen32b-gptq",
    ]


def test_a_cell_the_catalogue_cannot_serve_is_skipped_with_the_reason(
    matrix: pytest.Pytester,
) -> None:
    result = run(matrix, "-rs", "--backend", "vllm", "--model", "qwen72b-gptq,qwen72b-q4km")
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines([
        "SKIPPED * qwen72b-q4km has no hf source, which vllm loads (catalogue entry: "
        "built-in catalogue (qwen72b-q4km))",
    ])
    assert events(matrix) == ["start vllm-qwen72b-gptq", "stop vllm-qwen72b-gptq"]
    # The run's document keeps the skipped cells and why: a comparison of configurations
    # lists them (python -m pytest_llmperf configs).
    from pytest_llmperf.store.documents import load_run

    document = load_run(matrix.path / "llmperf-output" / "results.json")
    assert sorted((t.nodeid, t.outcome, t.when) for t in document.unmeasured) == [
        ("test_suite.py::test_one[vllm-qwen72b-q4km]", "skipped", "setup"),
        ("test_suite.py::test_two[vllm-qwen72b-q4km]", "skipped", "setup")]
    assert all(t.reason.startswith("qwen72b-q4km has no hf source, which vllm loads")
               and t.target == ("vllm", "qwen72b-q4km") for t in document.unmeasured)


def test_unknown_alias_is_a_usage_error_listing_the_known_ones(matrix: pytest.Pytester) -> None:
    result = run(matrix, "--model", "qwen-typo")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: --model (command line): unknown model 'qwen-typo'; known aliases: "
        "deepseek-r1-llama70b, deepseek-r1-qwen32b, qwen32b-gptq, qwen32b-q4km, qwen72b-gptq, "
        "qwen72b-q4km, smollm2-135m (add your own*",
    ])
    assert not (matrix.path / "events.log").exists()


def test_missing_engine_is_one_line_naming_what_to_install(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLMPERF_BACKEND", raising=False)
    pytester.makepyfile(test_suite=TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--backend", "vllm",
                                "--model", "qwen72b-gptq")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1
    assert errors[0].startswith("ERROR: backend vllm: Python module 'vllm' is not installed")
    assert "`pip install vllm`" in errors[0]


def test_user_alias_in_thresholds_and_in_a_named_catalogue_file(
    matrix: pytest.Pytester,
) -> None:
    matrix.makefile(".toml", thresholds="""
catalog = "models.toml"

[defaults]
slo = ["error_rate <= 0.01"]

[models.my-qwen]
params_b = 7.6
hf = { id = "Qwen/Qwen2.5-7B-Instruct", bits = 16 }
slo = ["tpot_ms.p95 < 50"]
""")
    matrix.makefile(".toml", models="""
[models.team-llama]
hf = "meta-llama/Llama-3.1-8B-Instruct"
""")
    result = run(matrix, "--backend", "vllm", "--model", "my-qwen,team-llama")
    result.assert_outcomes(passed=4)
    assert events(matrix) == ["start vllm-my-qwen", "stop vllm-my-qwen",
                              "start vllm-team-llama", "stop vllm-team-llama"]


def test_engine_ids_pass_through_without_an_alias(matrix: pytest.Pytester) -> None:
    model_dir = matrix.path / "local-model"
    model_dir.mkdir()
    result = run(matrix, "--backend", "vllm", "--model", f"Qwen/Qwen2.5-0.5B,{model_dir}")
    result.assert_outcomes(passed=4)
    assert events(matrix)[0::2] == ["start vllm-Qwen/Qwen2.5-0.5B", "start vllm-local-model"]


def test_base_url_takes_one_backend_and_model(matrix: pytest.Pytester) -> None:
    result = run(matrix, "--backend", "vllm,sglang", "--base-url", "http://127.0.0.1:9/v1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--base-url attaches to one running server, so it takes one "
                                 "--backend and one --model"])


def test_xdist_groups_one_per_target(matrix: pytest.Pytester) -> None:
    """Under --dist loadgroup, pytest-xdist keeps a target's tests on one worker."""
    matrix.makeconftest(LOGGING_SERVER_CONFTEST + '''
def pytest_collection_modifyitems(items):
    for item in items:
        groups = [m.args[0] for m in item.iter_markers("xdist_group")]
        print("GROUP", item.nodeid, groups)
''')
    result = run(matrix, "--backend", "vllm", "--model", "qwen72b-gptq,qwen32b-gptq",
                 "--collect-only", "-s")
    out = result.stdout.str()
    assert "GROUP test_suite.py::test_one[vllm-qwen72b-gptq] ['vllm-qwen72b-gptq']" in out
    assert "GROUP test_suite.py::test_two[vllm-qwen32b-gptq] ['vllm-qwen32b-gptq']" in out


def test_under_xdist_loadgroup_each_target_runs_on_one_worker_with_its_gpus(
    matrix: pytest.Pytester,
) -> None:
    matrix.makeconftest(XDIST_LOGGING_CONFTEST)
    result = run(matrix, "-n", "2", "--dist", "loadgroup", "--gpus", "0,1|2,3",
                 "--backend", "vllm", "--model", "qwen72b-gptq,qwen32b-gptq")
    result.assert_outcomes(passed=4)
    # Each target's two tests ran on one worker, which started its server once.
    ran_on: dict[str, set[str]] = {}
    for line in result.stdout.lines:
        if "PASSED" in line and line.startswith("[gw"):
            target = line.rsplit("[", 1)[1].split("]")[0]
            ran_on.setdefault(target, set()).add(line[1:4])
    assert {t: len(w) for t, w in ran_on.items()} == {"vllm-qwen72b-gptq": 1,
                                                       "vllm-qwen32b-gptq": 1}
    starts = [line.split() for line in events(matrix) if line.startswith("start")]
    assert sorted(target for _, target, _, _ in starts) == ["vllm-qwen32b-gptq",
                                                            "vllm-qwen72b-gptq"]
    gpu_sets = {"gw0": "0,1", "gw1": "2,3"}
    for _, target, worker, gpus in starts:
        assert ran_on[target] == {worker}
        assert gpus == gpu_sets[worker]  # each worker launches on its own GPU set


XDIST_LOGGING_CONFTEST = """
import os
import pytest


@pytest.fixture(scope="session")
def llmperf_server(llmperf_target, llmperf_settings):
    gpus = ",".join(map(str, llmperf_settings.server.gpu_ids()))
    worker = os.environ["PYTEST_XDIST_WORKER"]
    with open(os.environ["SERVER_EVENTS"], "a") as f:
        f.write(f"start {llmperf_target.id} {worker} {gpus}\\n")
    yield llmperf_target
"""


@pytest.mark.parametrize(
    ("nodeid", "expected"),
    [
        ("t.py::test_x[vllm-qwen72b-gptq]", "vllm-qwen72b-gptq"),
        ("t.py::test_x[vllm-qwen72b-gptq-4]", "vllm-qwen72b-gptq"),  # more parameters
        ("t.py::test_x[8-vllm-qwen72b-gptq]", "vllm-qwen72b-gptq"),
        ("t.py::test_x[vllm-qwen72b-gptq-int8]", "vllm-qwen72b-gptq-int8"),  # longest wins
        ("t.py::test_x[sglang-qwen72b-gptq]", None),
        ("t.py::test_plain", None),
    ],
)
def test_target_of_a_node_id(nodeid: str, expected: str | None) -> None:
    from pytest_llmperf.plugin.xdist_groups import target_of

    targets = ["vllm-qwen72b-gptq", "vllm-qwen72b-gptq-int8", "vllm-qwen32b-gptq"]
    assert target_of(nodeid, targets) == expected
