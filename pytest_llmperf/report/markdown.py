"""The markdown report a person reads first: environment, capacity figures and searches, one
section per measured window, the definitions of every number."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tabulate import tabulate

from pytest_llmperf.observe.host import host_facts
from pytest_llmperf.report.search_markdown import searches_markdown
from pytest_llmperf.report.summary import summary_section
from pytest_llmperf.report.window_markdown import window_section
from pytest_llmperf.results.recorded import RecordedSearch, RecordedWindow
from pytest_llmperf.results.served import ServedInfo

__all__ = ["render_markdown"]


def render_markdown(windows: Sequence[RecordedWindow], rootdir: Path,
                    searches: Sequence[RecordedSearch] = (),
                    hosts: Mapping[str, Mapping[str, object]] | None = None) -> str:
    """The report: the answer first (report.summary), then the environment (and the other
    hosts of a session over several), capacity figures and searches, then every measured
    window."""
    served = [*(w.window.served for w in windows), *(s.served for s in searches)]
    lines = ["# LLM serving performance", "", *summary_section(windows, searches),
             *_environment_section(served, rootdir), ""]
    if hosts:
        lines.extend([*_hosts_section(hosts), ""])
    lines.extend(searches_markdown(searches))
    for window in windows:
        lines.extend(window_section(window))
    lines.extend(_definitions(any(w.window.server_metrics or w.window.server_families
                                  for w in windows)))
    return "\n".join(lines) + "\n"


def _environment_section(served: Sequence[ServedInfo], rootdir: Path) -> list[str]:
    rows = [[name, value] for name, value in host_facts(rootdir).items()]
    targets: dict[str, ServedInfo] = {}
    for info in served:
        name = Path(info.model).name if Path(info.model).is_absolute() else info.model
        targets.setdefault(f"{info.backend}-{name}", info)  # as in the test ids
    for target, info in targets.items():
        rows.append([f"target {target}", info.engine])
        if info.model_file:
            rows.append(["model file", f"`{info.model_file}`"])
        if info.model_sha256:
            rows.append(["model sha256", f"`{info.model_sha256}`"])
        if info.startup_s is not None:
            rows.append(["startup (launch to ready)", f"{info.startup_s:.1f} s"])
        if info.first_ttft_ms is not None:
            rows.append(["first request's TTFT once ready", f"{info.first_ttft_ms:.1f} ms"])
    return ["## Environment", "", tabulate(rows, headers=["", ""], tablefmt="github")]


def _hosts_section(hosts: Mapping[str, Mapping[str, object]]) -> list[str]:
    """The other hosts of the session, by label (their test ids end ``@LABEL``)."""
    rows = []
    for label, facts in sorted(hosts.items()):
        gpus = facts.get("gpu_models")
        shown = (", ".join(str(g) for g in gpus) if isinstance(gpus, list) and gpus
                 else f"none ({facts.get('gpu_unavailable_reason') or 'no GPU'})")
        rows.append([label, facts.get("hostname", "-"),
                     f"{facts.get('cpu_model', '-')}, {facts.get('cpu_cores', '-')} cores",
                     shown, facts.get("gpu_driver") or "-", facts.get("cuda") or "-",
                     facts.get("git_commit", "-")])
    return ["## Hosts", "",
            "The session's other hosts; their tests are named `test_x[...@LABEL]`.", "",
            tabulate(rows, headers=["label", "hostname", "CPU", "GPUs", "driver", "CUDA",
                                    "git commit"], tablefmt="github")]


def _definitions(server_metrics: bool) -> list[str]:
    lines = [
        "## Definitions",
        "",
        "TTFT = first streamed token - request sent; E2EL = last token - request sent; "
        "TPOT = (E2EL - TTFT) / (output tokens - 1), for answers of 2+ tokens that came in "
        "more than one chunk (the others are counted as untimed_decodes); ITL = gaps between "
        "streamed chunks; decode tok/s/user = 1 / TPOT; throughputs = tokens or requests / "
        "measured window (warm-up excluded). Percentiles interpolate linearly; stdev is the "
        "population stdev.",
        "",
    ]
    if server_metrics:
        lines += [
            "Server numbers are the engine's own Prometheus metrics over the same window, "
            "scraped just before and just after it (summed over its label sets, the KV cache "
            "usage ratio averaged): a server "
            "mean is the change of a histogram's sum / the change of its count; token counts "
            "are counter changes; decode time / generated tokens and prefill time per prompt "
            "token divide llama.cpp's time counters by its token counters; KV cache and "
            "request peaks come from polling the engine's gauges every 0.5 s during the "
            "window. The engine measures from when it receives a request to when it emits a "
            "token, so its times leave out the network and the client. Each metrics URL's "
            "families: a counter's delta and rate, a histogram's count, mean and percentiles "
            "from the window's bucket deltas, a gauge's peak and mean over the polls and "
            "both scrapes.",
            "",
        ]
    return lines
