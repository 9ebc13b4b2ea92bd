"""One session over several hosts: pytest-xdist workers on other machines, each a host.

``pytest tests/perf --dist each --tx ssh=gpu-a//python=/srv/venv/bin/python//chdir=/srv/suite
--tx ssh=gpu-b//...`` runs the suite on every host; each host launches its engines on its own
GPUs and the controller writes one report, one document and one saved run of every host's
windows.  What this module adds to pytest-xdist:

- **A label per host.**  A worker's label is its gateway id when the user named it
  (``//id=gpu-a``), else the ssh host (``ssh=user@gpu-a`` is ``gpu-a``); workers of one host
  that share a label get ``#2``, ``#3``.  A popen worker (``-n 4``, ``--tx popen``) runs on the
  session's own host and has no label unless named.  The label goes to every result
  (``Provenance.host``), to the test ids of the reports (``test_x[...@gpu-a]``) and picks the
  host's fingerprint in the document.
- **GPU sets per host.**  ``--gpus '0,1|2,3'`` gives the n-th worker *of each host* the n-th
  set, so two workers on each of two hosts use both halves of each host; a host with GPUs of
  its own may set ``//env:LLMPERF_GPUS=...`` in its ``--tx`` instead.
- **A host that goes away** under ``--dist each`` fails each test it had not run, with the
  reason, so that no host's results are silently missing.
- **Paths on the command line.**  pytest-xdist resolves a remote worker's path arguments
  against its rsync roots (deprecated) and stops with an INTERNALERROR for ``tests/perf``.  A
  remote worker's directory (``//chdir=``) is the suite's rootdir on that host: path arguments
  under the rootdir go to it relative to the rootdir, others as they are.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.results.host_names import with_host

__all__ = ["HOST_SLOT_ENV", "HostsPlugin", "enter_worker", "host_label", "labels_of",
           "report_host", "take_remote_args"]

# This worker's place among the workers of its host ("index/count"), for --gpus sets.
HOST_SLOT_ENV = "LLMPERF_HOST_SLOT"
_AUTO_ID = re.compile(r"gw\d+")
# A path argument sent to a remote worker as rootdir-relative: the worker takes the prefix off
# (a path that exists here would be resolved against rsync roots by pytest-xdist).
_ROOTDIR_PREFIX = "llmperf-rootdir:"


def host_label(config: pytest.Config) -> str | None:
    """This process's host label: None on the session's own host (no xdist, a popen worker)."""
    workerinput = getattr(config, "workerinput", None)
    label = workerinput.get("llmperf_host") if isinstance(workerinput, dict) else None
    return label if isinstance(label, str) and label else None


def report_host(report: pytest.TestReport) -> str | None:
    """On the controller: the label of the host whose worker sent ``report`` (None: the
    session's own host)."""
    workerinput = getattr(getattr(report, "node", None), "workerinput", None)
    label = workerinput.get("llmperf_host") if isinstance(workerinput, dict) else None
    return label if isinstance(label, str) and label else None


def labels_of(specs: Sequence[Any]) -> dict[str, tuple[str | None, int, int]]:
    """Each gateway id's (host label, slot on its host, workers on its host).

    ``specs`` are execnet XSpecs with their ids allocated (``gw0`` when none was given)."""
    machines: dict[str, list[str]] = {}  # the host a worker runs on -> its workers' ids
    named: dict[str, str | None] = {}
    for spec in specs:
        machine = "" if spec.popen else (spec.ssh or spec.socket or "")
        machine = machine.rpartition("@")[2]
        machines.setdefault(machine, []).append(spec.id)
        own = spec.id if spec.id and not _AUTO_ID.fullmatch(spec.id) else None
        named[spec.id] = own or (machine or None)
    counts: dict[str, int] = {}
    for label in named.values():
        if label is not None:
            counts[label] = counts.get(label, 0) + 1
    seen: dict[str, int] = {}
    found: dict[str, tuple[str | None, int, int]] = {}
    for ids in machines.values():
        for slot, worker in enumerate(ids):
            label = named[worker]
            if label is not None and counts[label] > 1:
                seen[label] = seen.get(label, 0) + 1
                label = label if seen[label] == 1 else f"{label}#{seen[label]}"
            found[worker] = (label, slot, len(ids))
    return found



def _remote_args(args: Sequence[str], rootdir: Path, invocation_dir: Path) -> Iterator[str]:
    for arg in args:
        path, colons, rest = arg.partition("::")
        candidate = Path(path) if Path(path).is_absolute() else invocation_dir / path
        try:
            exists = bool(path) and not arg.startswith("-") and candidate.exists()
        except OSError:
            exists = False
        if not exists:
            yield arg
            continue
        try:
            relative = candidate.resolve().relative_to(rootdir.resolve())
        except ValueError:
            yield _ROOTDIR_PREFIX + str(candidate.resolve()) + colons + rest
            continue
        yield _ROOTDIR_PREFIX + relative.as_posix() + colons + rest


def take_remote_args(args: list[str]) -> None:
    """On a worker: the path arguments the controller sent rootdir-relative, as paths (in
    place: pytest reads its file arguments from this list)."""
    for index, arg in enumerate(args):
        if arg.startswith(_ROOTDIR_PREFIX):
            args[index] = arg[len(_ROOTDIR_PREFIX):] or "."


class HostsPlugin:
    """The controller's side (registered when pytest-xdist is active)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._saved_args: tuple[str, ...] | None = None
        self._collected: dict[str, tuple[Any, list[str]]] = {}  # worker id -> node, test ids
        self._reported: set[tuple[str, str]] = set()  # (worker id, test id) that ran
        self._lost: dict[str, str] = {}  # worker id -> why it went away

    def pytest_xdist_node_collection_finished(self, node: Any, ids: Sequence[str]) -> None:
        self._collected[node.gateway.id] = (node, list(ids))

    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        if error is not None:
            self._lost[node.gateway.id] = str(error).strip() or "its worker ended"

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Under ``--dist each``, a host that went away (ssh dropped, host rebooted) fails
        every test it had not run yet, with the reason, before junit and the terminal are
        written: its results are not silently missing.  (pytest-xdist reports the test it
        was running; under ``--dist load`` its other tests go to the other workers.)"""
        if self.config.getoption("dist", None) != "each":
            return
        for worker, why in self._lost.items():
            node, ids = self._collected.get(worker, (None, []))
            label = labels_of(node.nodemanager.specs)[worker][0] if node is not None else None
            for nodeid in ids:
                if (worker, nodeid) in self._reported:
                    continue
                path, _, name = nodeid.rpartition("::")
                report = pytest.TestReport(
                    nodeid, (path or nodeid, None, name), {}, "failed",
                    f"host {label or worker} went away before this test ran: {why}", "setup")
                report.node = node  # type: ignore[attr-defined]
                self.config.hook.pytest_runtest_logreport(report=report)

    def pytest_xdist_setupnodes(self, config: pytest.Config, specs: Sequence[Any]) -> None:
        for spec in specs:
            if not spec.popen and not spec.chdir:
                raise pytest.UsageError(
                    f"--tx {spec._spec}: a remote worker needs //chdir=DIR, the directory of "
                    "the suite on that host (its rootdir: tests/perf and thresholds.toml "
                    "there), e.g. --tx ssh=gpu-a//python=/srv/venv/bin/python//chdir=/srv/suite")
        # Unasked, pytest-xdist copies the controller's pytest into each remote directory
        # (its deprecated rsync), where the host's suite would then import it instead of the
        # pytest installed beside the plugin: only what --rsyncdir names is copied.
        dsession = config.pluginmanager.getplugin("dsession")
        manager = getattr(dsession, "nodemanager", None)
        if (manager is not None and isinstance(getattr(manager, "roots", None), list)
                and not config.getoption("rsyncdir", None) and not config.getini("rsyncdirs")):
            manager.roots = []

    def pytest_xdist_newgateway(self, gateway: Any) -> None:
        """Before pytest-xdist computes this worker's arguments: path arguments as the remote
        worker reads them (module docstring); restored in :meth:`pytest_configure_node`."""
        spec = gateway.spec
        if spec.popen and not spec.chdir:
            return
        params = self.config.invocation_params
        self._saved_args = params.args
        remote = tuple(_remote_args(params.args, self.config.rootpath, params.dir))
        self.config.invocation_params = dataclasses.replace(params, args=remote)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """A worker's report names its host in its test id, before junit and the terminal
        read it: they tell the hosts' runs of one test apart (the worker itself must keep the
        id it collected)."""
        node = getattr(report, "node", None)
        if node is not None and hasattr(node, "gateway"):
            self._reported.add((node.gateway.id, report.nodeid))
        label = report_host(report)
        if label:
            report.nodeid = with_host(report.nodeid, label)

    def pytest_configure_node(self, node: Any) -> None:
        if self._saved_args is not None:
            self.config.invocation_params = dataclasses.replace(
                self.config.invocation_params, args=self._saved_args)
            self._saved_args = None
        label, slot, count = labels_of(node.nodemanager.specs)[node.gateway.id]
        node.workerinput["llmperf_host"] = label
        node.workerinput["llmperf_host_slot"] = f"{slot}/{count}"


def enter_worker(config: pytest.Config) -> None:
    """On a worker: its slot among its host's workers, for the GPU sets (settings.groups)."""
    workerinput = getattr(config, "workerinput", None)
    slot = workerinput.get("llmperf_host_slot") if isinstance(workerinput, dict) else None
    if isinstance(slot, str):
        os.environ[HOST_SLOT_ENV] = slot

