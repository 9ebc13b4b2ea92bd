"""One session over several hosts (plugin.hosts): labels, GPU sets per host, path arguments for
remote workers, results and documents that name their host, and baselines that never compare
one host's windows with another's.  The real session over ssh is
tests/integration/test_hosts_ssh.py."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_llmperf.plugin.hosts import _remote_args, labels_of, take_remote_args
from pytest_llmperf.report.markdown import render_markdown
from pytest_llmperf.results.host_names import with_host
from pytest_llmperf.results.jsonfields import Fields
from pytest_llmperf.results.recorded import Provenance, RecordedWindow
from pytest_llmperf.settings.groups import SettingError
from pytest_llmperf.settings.resolve import resolve_settings
from pytest_llmperf.store.baseline import Baseline, load_baseline
from pytest_llmperf.store.compare import group_windows
from pytest_llmperf.store.documents import RunDocument, load_run, write_run
from tests.unit.test_compare import closed_loop, window


def spec(text: str, worker: str) -> SimpleNamespace:
    """An execnet XSpec's fields that matter here."""
    kind, _, rest = text.partition("=")
    return SimpleNamespace(id=worker, popen=kind == "popen", ssh=rest if kind == "ssh" else None,
                           socket=rest if kind == "socket" else None)


def test_labels_name_the_host_or_what_the_user_named_the_worker() -> None:
    specs = [spec("popen", "gw0"), spec("popen", "gw1"), spec("ssh=me@gpu-a", "gw2"),
             spec("ssh=gpu-a", "gw3"), spec("ssh=gpu-b", "big"), spec("popen", "local-named")]
    found = labels_of(specs)
    assert found == {
        "gw0": (None, 0, 3), "gw1": (None, 1, 3),  # the session's own host: no label
        "gw2": ("gpu-a", 0, 2), "gw3": ("gpu-a#2", 1, 2),  # two workers of one host
        "big": ("big", 0, 1),
        "local-named": ("local-named", 2, 3),
    }


@pytest.mark.parametrize(("name", "host", "shown"), [
    ("test_x[llamacpp-m-users4]", "gpu-a", "test_x[llamacpp-m-users4@gpu-a]"),
    ("t.py::test_x", "gpu-a", "t.py::test_x[@gpu-a]"),
    ("test_x[a]", None, "test_x[a]"),
])
def test_test_ids_name_the_host(name: str, host: str | None, shown: str) -> None:
    assert with_host(name, host) == shown
    assert Provenance(f"t.py::{name}", host=host).test == shown.split("::")[-1]


def gpu_ids(text: str, env: dict[str, str]) -> tuple[int, ...] | None:
    settings = resolve_settings({"gpus": text}, {}, {}, Path("."))
    return settings.server.gpu_ids(env)


def test_gpu_sets_are_per_host_so_each_hosts_workers_split_its_gpus() -> None:
    # Two workers on each of two hosts: the n-th worker of a host takes the n-th set.
    both = {"PYTEST_XDIST_WORKER": "gw3", "PYTEST_XDIST_WORKER_COUNT": "4"}
    assert gpu_ids("0,1|2,3", {**both, "LLMPERF_HOST_SLOT": "1/2"}) == (2, 3)
    assert gpu_ids("0,1|2,3", {**both, "LLMPERF_HOST_SLOT": "0/2"}) == (0, 1)
    # One set and one worker on each host: no clash, though the session has several workers.
    assert gpu_ids("0,1", {**both, "LLMPERF_HOST_SLOT": "0/1"}) == (0, 1)
    with pytest.raises(SettingError, match="one GPU set"):  # two workers of one host
        gpu_ids("0,1", {**both, "LLMPERF_HOST_SLOT": "1/2"})


def test_path_arguments_go_to_a_remote_worker_relative_to_the_rootdir(tmp_path: Path) -> None:
    root = tmp_path / "suite"
    (root / "tests" / "perf").mkdir(parents=True)
    (root / "tests" / "perf" / "test_a.py").write_text("")
    (root / "thresholds.toml").write_text("")
    outside = tmp_path / "elsewhere.toml"
    outside.write_text("")
    args = ["tests/perf", "-k", "users", "perf/test_a.py::test_x[a]", "--thresholds",
            "../thresholds.toml", str(outside), "not-a-path"]
    sent = list(_remote_args(args, root, root / "tests"))  # pytest ran from suite/tests
    # "tests/perf" does not exist from suite/tests: sent as given, as are options and words.
    assert sent == ["tests/perf", "-k", "users",
                    "llmperf-rootdir:tests/perf/test_a.py::test_x[a]",
                    "--thresholds", "llmperf-rootdir:thresholds.toml",
                    f"llmperf-rootdir:{outside}", "not-a-path"]
    take_remote_args(sent)
    assert sent == ["tests/perf", "-k", "users", "tests/perf/test_a.py::test_x[a]",
                    "--thresholds", "thresholds.toml", str(outside), "not-a-path"]


def document(*hosts: str | None, tpot_ms: float = 20.0) -> RunDocument:
    windows = [RecordedWindow(Provenance("t.py::test_x[openai-stub]", host=host),
                              window(closed_loop(40, tpot_ms, seed=i)))
               for i, host in enumerate(hosts)]
    facts = {host: {"hostname": f"box-{host}", "cpu_model": "cpu", "cpu_cores": 8,
                    "gpu_models": ["NVIDIA RTX A6000"] * 2, "gpu_count": 2,
                    "gpu_driver": "550", "cuda": "12.4"} for host in hosts if host}
    return RunDocument.new(windows, {"hostname": "ctl", "cpu_model": "cpu", "cpu_cores": 2,
                                     "gpu_models": [], "gpu_count": 0}, hosts=facts)


def test_a_document_keeps_every_hosts_windows_and_fingerprint(tmp_path: Path) -> None:
    path = write_run(document(None, "gpu-a", "gpu-b"), tmp_path / "run.json")
    read = load_run(path)
    assert read.host_labels == (None, "gpu-a", "gpu-b")
    assert [w.provenance.host for w in read.windows] == [None, "gpu-a", "gpu-b"]
    assert read.fingerprint_of("gpu-a") == read.hosts["gpu-a"]
    assert read.fingerprint_of(None) == read.fingerprint
    assert read.fingerprint_of("gpu-c") is None
    raw = json.loads(path.read_text())
    assert "host" not in raw["windows"][0] and raw["windows"][1]["host"] == "gpu-a"
    # A document of one host, as every document before hosts, has no "hosts" key.
    single = json.loads(write_run(document(None), tmp_path / "one.json").read_text())
    assert "hosts" not in single and RunDocument.from_json(Fields(single)).hosts == {}


def test_a_baseline_compares_each_host_with_the_same_host_only(tmp_path: Path) -> None:
    before = write_run(document("gpu-a", "gpu-b", tpot_ms=20.0), tmp_path / "before.json")
    windows = group_windows(load_run(before).windows, "gpu-a")
    assert list(windows) == [("t.py::test_x[openai-stub]", 1)] and len(windows[
        ("t.py::test_x[openai-stub]", 1)]) == 1
    here = dict(load_run(before).hosts["gpu-a"])
    settings = resolve_settings({"compare": str(before)}, {}, {}, tmp_path).store
    on_a = load_baseline(settings, tmp_path, here, host="gpu-a")
    on_c = load_baseline(settings, tmp_path, here, host="gpu-c")
    assert isinstance(on_a, Baseline) and isinstance(on_c, Baseline)
    slower = [window(closed_loop(40, 30.0, seed=9))]
    compared = on_a.compare("t.py::test_x[openai-stub]", 1, slower, [])
    assert compared.missing is None
    assert compared.rows and any(row.verdict == "regressed" for row in compared.rows)
    # A host the baseline never saw is compared with nothing: not with another host.
    missing = on_c.compare("t.py::test_x[openai-stub]", 1, slower, [])
    assert missing.missing == ("this test and call are not in the baseline for host gpu-c")
    # The session's own host (no label) is not gpu-a either.
    own = load_baseline(settings, tmp_path, dict(load_run(before).fingerprint))
    assert own is not None and own.compare("t.py::test_x[openai-stub]", 1, slower, []).missing


def test_other_hardware_is_refused_per_host(tmp_path: Path) -> None:
    from pytest_llmperf.store.baseline import BaselineError

    before = write_run(document("gpu-a"), tmp_path / "before.json")
    settings = resolve_settings({"compare": str(before)}, {}, {}, tmp_path).store
    other = {**load_run(before).hosts["gpu-a"], "gpu_models": ["NVIDIA L4"], "gpu_count": 1}
    with pytest.raises(BaselineError, match=r"other hardware \(gpu_models: baseline \['NVIDIA RTX "
                       r"A6000', 'NVIDIA RTX A6000'\], host gpu-a \['NVIDIA L4'\]"):
        load_baseline(settings, tmp_path, other, host="gpu-a")


def test_the_report_lists_the_other_hosts_and_names_each_windows_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pytest_llmperf.report.markdown.host_facts",
                        lambda rootdir: {"host": "ctl"})
    doc = document(None, "gpu-a")
    text = render_markdown(doc.windows, tmp_path, hosts=doc.hosts)
    assert "## Hosts" in text
    row = next(line for line in text.splitlines() if line.startswith("| gpu-a"))
    assert "box-gpu-a" in row and "NVIDIA RTX A6000, NVIDIA RTX A6000" in row and "550" in row
    assert "## `t.py::test_x[openai-stub@gpu-a]`" in text
    assert "## `t.py::test_x[openai-stub]`" in text
