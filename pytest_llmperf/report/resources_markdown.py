"""The report's resources under a window: server CPU/RAM, the machine, and each GPU."""

from __future__ import annotations

from tabulate import tabulate

from pytest_llmperf.report.cells import cell
from pytest_llmperf.results.resources import GpuUse, MeanPeak, Resources

__all__ = ["resources_markdown"]

# Per-GPU figure -> column label, and which statistic it shows ("both": mean / peak).
_GPU_COLUMNS = (
    ("util_pct", "util % mean/peak", "both"),
    ("memory_used_mib", "memory MiB mean/peak", "both"),
    ("process_memory_mib", "server GPU memory MiB peak", "peak"),
    ("power_w", "power W mean/peak", "both"),
    ("temperature_c", "temp C peak", "peak"),
    ("sm_clock_mhz", "SM clock MHz mean", "mean"),
)


def resources_markdown(resources: Resources | None, timeline_png: str | None) -> list[str]:
    """Server CPU/RAM, the machine, and each GPU, over the measured window."""
    if resources is None:
        return []
    server, system = resources.server, resources.system
    rows = [[f"{label} ({unit})", cell(figure.mean), cell(figure.peak)]
            for label, figure, unit in (("server CPU", server.cpu_pct, "% of one core"),
                                        ("server RSS", server.rss_mib, "MiB"),
                                        ("system CPU", system.cpu_pct, "% of all cores"),
                                        ("system memory used", system.memory_used_mib, "MiB"))
            if figure is not None]
    lines = [f"Resources over the window ({server.scope or 'no server process'}"
             + (f", pid {server.pid}" if server.pid else "") + "):", ""]
    if rows:
        lines += [tabulate(rows, headers=["", "mean", "peak"], tablefmt="github"), ""]
    if system.memory_limit_mib:
        lines += [f"Memory limit (RAM or cgroup): {cell(system.memory_limit_mib)} MiB.", ""]
    if resources.gpus:
        gpu_rows = [[f"{gpu.index}: {gpu.name}",
                     *(_gpu_cell(gpu, name, stat) for name, _, stat in _GPU_COLUMNS),
                     cell(gpu.energy_j)] for gpu in resources.gpus]
        headers = ["GPU", *(label for _, label, _ in _GPU_COLUMNS), "energy J"]
        lines += [tabulate(gpu_rows, headers=headers, tablefmt="github"), ""]
        if "energy_j_per_token" in resources.metrics:
            lines += [f"Energy per output token: "
                      f"{cell(resources.metrics['energy_j_per_token'])} J.", ""]
    elif resources.gpu_unavailable_reason:
        lines += [f"GPU: {resources.gpu_unavailable_reason} (GPU metrics absent).", ""]
    if timeline_png:
        lines += [f"Timeline: ![timeline]({timeline_png})", ""]
    if resources.error:
        lines += [f"Telemetry error: {resources.error}", ""]
    return lines


def _gpu_cell(gpu: GpuUse, name: str, stat: str) -> str:
    figure: MeanPeak | None = gpu.figure(name)
    if figure is None:
        return "-"
    if stat == "peak":
        return cell(figure.peak)
    if stat == "mean":
        return cell(figure.mean)
    return f"{cell(figure.mean)} / {cell(figure.peak)}"
