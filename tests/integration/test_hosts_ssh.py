"""One session over several hosts, for real: an OpenSSH server on the loopback address is two
"hosts" (``host-a``, ``host-b``, each with its own copy of the suite in a directory of its own)
beside a ``--tx popen`` worker on the session's own host.  ``--dist each`` runs the suite's
concurrency test on all three against the embedded llama.cpp engine; the controller writes one
junit file, one report, one result document and one saved run holding all three windows, each
naming its host, each host with its own fingerprint.  A host whose worker dies mid-session
fails its test with the reason; the others' results stay whole and no engine stays behind.

All three share this machine's cores, so their windows read ``disturbed``: correct.  Needs
Debian's openssh-server (``/usr/sbin/sshd``): ``.ci/run`` installs it and sets
``LLMPERF_SSH_TESTS=required``, so that CI fails rather than skips without it.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pytest_llmperf.engines.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SSHD = Path("/usr/sbin/sshd")
pytestmark = pytest.mark.hosts_ssh

# The test is about the session's shape, not this machine's speed: three engines share 2 cores.
LENIENT = """
[defaults]
slo = ["error_rate <= 0.01", "decode_tokens_per_s.mean >= 0.1"]
"""
# A test that takes its worker down on the host told to (a host rebooted, an ssh link dropped).
DYING = """
import os, signal
from pytest_llmperf import LoadFunction, Target

def test_then_the_host_goes_away(llmperf_target: Target, llmperf_load: LoadFunction) -> None:
    llmperf_load(users=1)
    if os.environ.get("LLMPERF_TEST_DIE_HERE"):
        os.kill(os.getpid(), signal.SIGKILL)
"""


def _need_sshd() -> None:
    if not SSHD.exists():
        message = "openssh-server is not installed (.ci/run installs it)"
        if os.environ.get("LLMPERF_SSH_TESTS") == "required":
            pytest.fail(message)
        pytest.skip(message)


def _suite(directory: Path, *, dying: bool = False) -> Path:
    (directory / "tests" / "perf").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "perf" / "test_concurrency.py", directory / "tests" / "perf")
    if dying:
        (directory / "tests" / "perf" / "test_host_dies.py").write_text(DYING)
    (directory / "thresholds.toml").write_text(LENIENT)
    (directory / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    return directory


@pytest.fixture
def ssh_config(tmp_path: Path) -> Iterator[Path]:
    """An sshd on 127.0.0.1 that lets this user in with a throwaway key; ``host-a`` and
    ``host-b`` are its names in the returned ssh_config."""
    _need_sshd()
    lab = tmp_path / "ssh"
    lab.mkdir()
    for key in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(lab / key)],
                       check=True)
    shutil.copy(lab / "user_key.pub", lab / "authorized_keys")
    port = free_port()
    (lab / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {lab / "host_key"}
AuthorizedKeysFile {lab / "authorized_keys"}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile {lab / "sshd.pid"}
""")
    config = lab / "ssh_config"
    config.write_text(f"""Host host-a host-b
  HostName 127.0.0.1
  Port {port}
  User {getpass.getuser()}
  IdentityFile {lab / "user_key"}
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  BatchMode yes
""")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    sshd = subprocess.Popen([str(SSHD), "-D", "-f", str(lab / "sshd_config"), "-E",
                             str(lab / "sshd.log")])
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["ssh", "-F", str(config), "host-a", "true"],
                             capture_output=True).returncode != 0:
            assert sshd.poll() is None, (lab / "sshd.log").read_text()
            assert time.monotonic() < deadline, (lab / "sshd.log").read_text()
            time.sleep(0.2)
        yield config
    finally:
        sshd.terminate()
        sshd.wait(timeout=10)


def _tx(config: Path, host: str, directory: Path, *env: str) -> str:
    extra = "".join(f"//env:{item}" for item in env)
    return (f"ssh={host}//ssh_config={config}//python={sys.executable}//chdir={directory}"
            f"//id={host}{extra}")


def _engines(under: Path) -> list[int]:
    """The embedded llama.cpp engines that this test's session started (their working
    directory is a host's or the controller's, under ``under``), still running 10 s after the
    session ended: a remote worker ends its engine as its ssh channel closes."""
    deadline = time.monotonic() + 10
    while (found := _running_engines(under)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def _running_engines(under: Path) -> list[int]:
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if ("pytest_llmperf.engines.xllamacpp_server" in cmdline
                and str(process.info["cwd"] or "").startswith(str(under))):
            found.append(process.pid)
    return found


def test_one_session_over_two_ssh_hosts_and_a_local_worker(tmp_path: Path,
                                                           ssh_config: Path) -> None:
    controller, host_a, host_b = (_suite(tmp_path / name) for name in ("ctl", "host-a", "host-b"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/perf/test_concurrency.py", "-p", "no:cacheprovider",
         "--dist", "each",
         # Two honestly different configurations: llama.cpp on 1 thread and on 2.
         "--tx", _tx(ssh_config, "host-a", host_a, "LLMPERF_ENGINE_ARGS=llamacpp: --threads 1"),
         "--tx", _tx(ssh_config, "host-b", host_b, "LLMPERF_ENGINE_ARGS=llamacpp: --threads 2"),
         "--tx", "popen",
         "--llmperf-requests", "4", "--llmperf-max-tokens", "16", "--llmperf-users", "2",
         "--llmperf-save", "three-hosts", "--llmperf-storage", "store",
         "--llmperf-report", "report.md", "--junitxml", "junit.xml"],
        cwd=controller, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    # Test ids name the host; the session's own host (the popen worker) has no label.
    names = sorted(case.get("name", "") for case in ET.parse(controller / "junit.xml").iter(
        "testcase"))
    assert names == ["test_concurrent_users[llamacpp-smollm2-135m-users2@host-a]",
                     "test_concurrent_users[llamacpp-smollm2-135m-users2@host-b]",
                     "test_concurrent_users[llamacpp-smollm2-135m-users2]"], names
    assert "test_concurrent_users[llamacpp-smollm2-135m-users2@host-b]" in done.stdout
    # One document (and one saved run) with every host's window and fingerprint.
    document = json.loads((controller / "llmperf-output" / "results.json").read_text())
    assert sorted(document["hosts"]) == ["host-a", "host-b"]
    assert all(facts["cpu_cores"] and "gpu_count" in facts
               for facts in document["hosts"].values())
    assert sorted(str(w.get("host")) for w in document["windows"]) == ["None", "host-a", "host-b"]
    assert all(w["outcome"] == "passed" and len(w["window"]["records"]) == 4
               for w in document["windows"])
    saved = list((controller / "store").glob("*_three-hosts.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["hosts"] == document["hosts"]
    # Each host ran its own suite copy and thresholds, and left its path arguments alone.
    report = (controller / "report.md").read_text()
    assert "## Hosts" in report and str(host_a / "thresholds.toml") in report
    assert str(host_b / "thresholds.toml") in report
    assert not (host_a / "_pytest").exists()  # pytest-xdist copied no pytest into the host
    # Which of the three to deploy, written at the end of the session.
    assert "## Which configuration to deploy" in report
    section = report[report.index("## Which configuration to deploy"):]
    rows = {line.split("|")[1].strip(): line for line in section.splitlines()
            if line.startswith("| host-")}
    assert "--threads 1" in rows["host-a"] and "--threads 2" in rows["host-b"], section[:3000]
    assert "Deploy **" in section  # a recommendation, whichever held
    # All three shared 2 cores: their windows say so.
    assert report.count("disturbed") >= 1, report[:3000]
    assert _engines(tmp_path) == []


def test_a_host_that_goes_away_fails_its_own_tests_only(tmp_path: Path,
                                                        ssh_config: Path) -> None:
    controller, host_a, host_b = (_suite(tmp_path / name, dying=True)
                                  for name in ("ctl", "host-a", "host-b"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/perf/test_host_dies.py",
         "tests/perf/test_concurrency.py", "-p", "no:cacheprovider", "--max-worker-restart=0",
         "--dist", "each", "--tx", _tx(ssh_config, "host-a", host_a),
         "--tx", _tx(ssh_config, "host-b", host_b, "LLMPERF_TEST_DIE_HERE=1"),
         "--llmperf-requests", "2", "--llmperf-max-tokens", "8", "--llmperf-users", "1",
         "--junitxml", "junit.xml"],
        cwd=controller, capture_output=True, text=True, timeout=540)
    assert done.returncode == 1, done.stdout[-6000:] + done.stderr[-3000:]
    cases = {case.get("name", ""): case for case in ET.parse(controller / "junit.xml").iter(
        "testcase")}
    dead = cases["test_then_the_host_goes_away[llamacpp-smollm2-135m@host-b]"]
    failure = dead.find("error")  # pytest-xdist: "worker 'host-b' crashed while running ..."
    assert failure is not None and "host-b" in (failure.get("message", "") + (
        failure.text or "")), ET.tostring(dead)[:2000]
    # The test it had not run yet fails with the reason, rather than being missing.
    never = cases["test_concurrent_users[llamacpp-smollm2-135m-users1@host-b]"]
    reason = never.find("error")
    if reason is None:
        reason = never.find("failure")
    assert reason is not None and "host host-b went away before this test ran" in (
        (reason.get("message") or "") + (reason.text or "")), ET.tostring(never)[:2000]
    assert "test_concurrent_users[llamacpp-smollm2-135m-users1@host-b]" in done.stdout
    for name in ("test_then_the_host_goes_away[llamacpp-smollm2-135m@host-a]",
                 "test_concurrent_users[llamacpp-smollm2-135m-users1@host-a]"):
        assert cases[name].find("failure") is None and cases[name].find("error") is None, name
    document = json.loads((controller / "llmperf-output" / "results.json").read_text())
    assert {w.get("host") for w in document["windows"]} == {"host-a"}
    assert len(document["windows"]) == 2 and "host-a" in document["hosts"]
    assert _engines(tmp_path) == []  # the dead worker's engine went with it (engines/guard.py)
