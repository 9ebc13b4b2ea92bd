"""Configurations: what a run (or one host of a multi-host run) served a model on, told apart
by hardware (the host's fingerprint), engine and version, model file and quantisation, and the
label a team gave it (a saved run's NAME, a host's label, or the file's stem)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_llmperf.results.recorded import RecordedSearch, RecordedWindow
from pytest_llmperf.results.served import ServedInfo
from pytest_llmperf.results.unmeasured import UnmeasuredTest
from pytest_llmperf.store.run_document import RunDocument

__all__ = ["ConfigRun", "Configuration", "Hardware", "label_of", "split_runs"]

_SAVED = re.compile(r"\d{4,}_(?P<name>.+)")


def label_of(path: Path) -> str:
    """``.llmperf/0003_a6000x2.json`` -> ``a6000x2``; ``llmperf-output/results.json`` ->
    ``llmperf-output``; any other file its stem."""
    match = _SAVED.fullmatch(path.stem)
    if match:
        return match["name"]
    if path.stem == "results" and path.parent.name:
        return path.parent.name
    return path.stem


@dataclass(frozen=True)
class Hardware:
    gpu_models: tuple[str, ...] = ()  # one entry per GPU
    cpu_model: str = "?"
    cpu_cores: int | None = None
    interconnect: str | None = None  # where the fingerprint says (nvlink, interconnect)

    @classmethod
    def of(cls, fingerprint: Mapping[str, object] | None) -> Hardware:
        facts = fingerprint or {}
        models = facts.get("gpu_models")
        gpus = tuple(str(m) for m in models) if isinstance(models, list) else ()
        cores = facts.get("cpu_cores")
        link = facts.get("interconnect") or facts.get("nvlink")
        return cls(gpus, str(facts.get("cpu_model") or "?"),
                   cores if isinstance(cores, int) else None,
                   _link_text(link) if link else None)

    @property
    def gpu_count(self) -> int:
        return len(self.gpu_models)

    @property
    def text(self) -> str:
        """``2x NVIDIA RTX A6000, NVLink``; ``CPU: AMD EPYC 7B13 (2 cores)`` without GPUs."""
        if not self.gpu_models:
            cores = f" ({self.cpu_cores} cores)" if self.cpu_cores else ""
            return f"CPU: {self.cpu_model}{cores}"
        counts: dict[str, int] = {}
        for model in self.gpu_models:
            counts[model] = counts.get(model, 0) + 1
        text = " + ".join(f"{n}x {model}" for model, n in counts.items())
        return f"{text}, {self.interconnect}" if self.interconnect else text


def _link_text(link: object) -> str:
    if isinstance(link, str):
        return link
    if isinstance(link, list):
        return f"NVLink ({len(link)} links)"
    return str(link)


@dataclass(frozen=True)
class Configuration:
    label: str
    hardware: Hardware
    served: ServedInfo  # for a configuration that measured nothing, what its test id names
    source: str = ""  # the file it came from ("" for a document in memory)
    host: str | None = None  # the host label in a multi-host run

    @property
    def gpu_count(self) -> int:
        return self.hardware.gpu_count

    @property
    def parallel_text(self) -> str:
        """``TP 2, gptq``; ``?`` for what the run did not record."""
        tp = self.served.tensor_parallel
        quant = self.served.quantization
        return f"TP {tp if tp is not None else '?'}, {quant or '?'}"


@dataclass(frozen=True)
class ConfigRun:
    """One configuration's results for one model."""

    config: Configuration
    windows: tuple[RecordedWindow, ...] = ()
    searches: tuple[RecordedSearch, ...] = ()
    unmeasured: tuple[UnmeasuredTest, ...] = ()

    @property
    def model(self) -> str:
        return self.config.served.model


def _served_key(served: ServedInfo) -> tuple[object, ...]:
    return (served.backend, served.model, served.engine, served.model_file, served.model_sha256,
            served.quantization, served.tensor_parallel, served.engine_args)


def split_runs(documents: Sequence[tuple[str, RunDocument]],
               sources: Sequence[str] | None = None) -> list[ConfigRun]:
    """One :class:`ConfigRun` per (document, host, what was served): a multi-host document
    holds one configuration per host.  ``documents`` are (label, document) pairs; labels that
    repeat get their source file (or their position) added."""
    runs: list[ConfigRun] = []
    for index, (label, document) in enumerate(documents):
        source = sources[index] if sources else ""
        runs.extend(_split(label, document, source))
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.config.label] = seen.get(run.config.label, 0) + 1
    out = []
    for position, run in enumerate(runs):
        config = run.config
        if seen[config.label] > 1:
            tail = config.source or f"#{position + 1}"
            config = _replace_label(config, f"{config.label} ({tail})")
        out.append(ConfigRun(config, run.windows, run.searches, run.unmeasured))
    return out


def _replace_label(config: Configuration, label: str) -> Configuration:
    return Configuration(label, config.hardware, config.served, config.source, config.host)


def _split(label: str, document: RunDocument, source: str) -> list[ConfigRun]:
    groups: dict[tuple[object, ...], tuple[ServedInfo, list[RecordedWindow],
                                           list[RecordedSearch], list[UnmeasuredTest]]] = {}
    for window in document.windows:
        key = (window.provenance.host, *_served_key(window.window.served))
        groups.setdefault(key, (window.window.served, [], [], []))[1].append(window)
    for search in document.searches:
        key = (search.provenance.host, *_served_key(search.served))
        groups.setdefault(key, (search.served, [], [], []))[2].append(search)
    for test in document.unmeasured:
        target = test.target or ("?", "?")
        matching = [key for key in groups
                    if key[0] == test.host and key[1:3] == target]
        if matching:
            groups[matching[0]][3].append(test)
            continue
        served = ServedInfo(target[0], target[1], "not started")
        key = (test.host, *_served_key(served))
        groups.setdefault(key, (served, [], [], []))[3].append(test)
    # Several engines for one model on one host: each its own configuration, named by backend.
    per_host_model: dict[tuple[object, str], int] = {}
    for key, (served, *_rest) in groups.items():
        per_host_model[(key[0], served.model)] = per_host_model.get((key[0], served.model),
                                                                   0) + 1
    runs = []
    for key, (served, windows, searches, unmeasured) in groups.items():
        host = key[0] if isinstance(key[0], str) else None
        name = host or label
        hostname = document.fingerprint.get("hostname")
        if host is None and document.hosts and hostname:  # the session's own host, named
            name = f"{label} on {hostname}"
        if per_host_model[(key[0], served.model)] > 1:
            name = f"{name} {served.backend}"
            if any(k != key and k[0] == key[0] and k[1] == served.backend
                   and k[2] == served.model for k in groups):
                name = f"{name} {served.engine}"
        hardware = Hardware.of(document.fingerprint_of(host))
        runs.append(ConfigRun(Configuration(name, hardware, served, source, host),
                              tuple(windows), tuple(searches), tuple(unmeasured)))
    return runs
