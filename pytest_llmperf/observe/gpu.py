"""GPU readings during a measured window, through NVML, and the host's GPU facts.

Every NVML call goes through an injected module-like object (``pynvml`` by default), so unit
tests drive it with scripted readings.  A reading that NVML refuses (``NotSupported`` for power
on some boards, ``NoPermission`` for process lists in containers) leaves its field absent: an
absent field is "not measured", never zero.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import pynvml

from pytest_llmperf.observe.gpu_samples import integrated_energy_j, timelines
from pytest_llmperf.observe.gpus import GpuInfo, GpuInventory, gpu_inventory
from pytest_llmperf.observe.process import MIB, mean_peak
from pytest_llmperf.results.resources import GPU_FIGURES, GpuTimeline, GpuUse, MeanPeak

__all__ = ["FIELDS", "GpuSampler", "host_gpu_facts", "open_gpu_sampler"]

# NVML enum values; fixed by NVML's C ABI, so fakes need not define them.
_TEMPERATURE_GPU = 0  # NVML_TEMPERATURE_GPU
_CLOCK_SM = 1  # NVML_CLOCK_SM
_NVLINK_MAX_LINKS = 36  # NVML_NVLINK_MAX_LINKS; links a board lacks raise, and are skipped
_FEATURE_ENABLED = 1  # NVML_FEATURE_ENABLED

# Per-sample fields of one GPU, with their units in the name.
FIELDS: tuple[str, ...] = GPU_FIGURES


def _read(call: Callable[..., Any], *args: Any) -> Any | None:
    """``call(*args)``, or None when NVML cannot give that reading on this board."""
    try:
        return call(*args)
    except pynvml.NVMLError:
        return None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def open_gpu_sampler(nvml: Any = None, tree_pids: Callable[[], Collection[int]] = frozenset
                     ) -> GpuSampler | str:
    """A sampler over every GPU of :func:`gpu_inventory`, or the reason there is none."""
    inventory = gpu_inventory(nvml)
    if inventory.reason is not None:
        return inventory.reason
    handles = _open_handles(nvml, inventory)
    if isinstance(handles, str):
        return handles
    return GpuSampler(pynvml if nvml is None else nvml, handles, inventory.gpus, tree_pids)


def _open_handles(nvml: Any, inventory: GpuInventory) -> list[Any] | str:
    """NVML stays initialised while we sample (the inventory shut it down again)."""
    nvml = pynvml if nvml is None else nvml
    try:
        nvml.nvmlInit()
        return [nvml.nvmlDeviceGetHandleByIndex(gpu.index) for gpu in inventory.gpus]
    except Exception as exc:  # the GPUs were there a moment ago: say what NVML said
        return f"no NVIDIA GPU: NVML failed to open the GPUs: {type(exc).__name__}: {exc}"


@dataclass
class _Gpu:
    info: GpuInfo
    handle: Any
    samples: dict[str, list[float | None]] = field(default_factory=dict)
    energy_start_mj: float | None = None


class GpuSampler:
    """Samples every GPU NVML sees.  ``tree_pids`` gives the server's process tree, whose
    GPU memory is read from NVML's per-process list (an empty tree: no such reading).

    Driven by :class:`pytest_llmperf.observe.telemetry.Telemetry` like the process sampler:
    ``start``, ``sample(t)`` during the window, ``finish`` for its figures.
    """

    def __init__(self, nvml: Any, handles: Sequence[Any], gpus: Sequence[GpuInfo],
                 tree_pids: Callable[[], Collection[int]] = frozenset) -> None:
        self._nvml = nvml
        self._tree_pids = tree_pids
        self._gpus = [_Gpu(info, handle) for info, handle in zip(gpus, handles, strict=True)]
        self._t: list[float] = []

    def close(self) -> None:
        _read(self._nvml.nvmlShutdown)

    def start(self) -> None:
        self._t = []
        for gpu in self._gpus:
            gpu.samples = {name: [] for name in FIELDS}
            gpu.energy_start_mj = _read(self._nvml.nvmlDeviceGetTotalEnergyConsumption,
                                        gpu.handle)

    def sample(self, t: float) -> None:
        self._t.append(t)
        pids = set(self._tree_pids())
        for gpu in self._gpus:
            for name, value in self._reading(gpu.handle, pids).items():
                gpu.samples[name].append(value)

    def _reading(self, handle: Any, pids: set[int]) -> dict[str, float | None]:
        nvml = self._nvml
        util = _read(nvml.nvmlDeviceGetUtilizationRates, handle)
        memory = _read(nvml.nvmlDeviceGetMemoryInfo, handle)
        power_mw = _read(nvml.nvmlDeviceGetPowerUsage, handle)
        process_memory = None
        if pids:
            processes = _read(nvml.nvmlDeviceGetComputeRunningProcesses, handle)
            if processes is not None:  # none of ours on this GPU is a real 0
                process_memory = sum(p.usedGpuMemory or 0 for p in processes
                                     if p.pid in pids) / MIB
        return {
            "util_pct": None if util is None else float(util.gpu),
            "memory_used_mib": None if memory is None else memory.used / MIB,
            "power_w": None if power_mw is None else power_mw / 1000,
            "temperature_c": _read(nvml.nvmlDeviceGetTemperature, handle, _TEMPERATURE_GPU),
            "sm_clock_mhz": _read(nvml.nvmlDeviceGetClockInfo, handle, _CLOCK_SM),
            "process_memory_mib": process_memory,
        }

    def finish(self) -> tuple[GpuUse, ...]:
        """Per GPU: mean and peak of each field measured, and the window's energy."""
        found = []
        for gpu in self._gpus:
            def figure(name: str, gpu: _Gpu = gpu) -> MeanPeak | None:
                return mean_peak(gpu.samples.get(name, []))

            joules, source = self._energy(gpu)
            found.append(GpuUse(
                gpu.info.index, gpu.info.name, gpu.info.uuid, gpu.info.total_mib,
                util_pct=figure("util_pct"), memory_used_mib=figure("memory_used_mib"),
                power_w=figure("power_w"), temperature_c=figure("temperature_c"),
                sm_clock_mhz=figure("sm_clock_mhz"),
                process_memory_mib=figure("process_memory_mib"),
                energy_j=joules, energy_source=source))
        return tuple(found)

    def _energy(self, gpu: _Gpu) -> tuple[float | None, str | None]:
        """The window's energy in J, and where it came from (None: no way to tell)."""
        end = _read(self._nvml.nvmlDeviceGetTotalEnergyConsumption, gpu.handle)
        if gpu.energy_start_mj is not None and end is not None and end >= gpu.energy_start_mj:
            return round((end - gpu.energy_start_mj) / 1000, 3), "NVML energy counter"
        # No counter on this board: integrate power over the samples (trapezoids).
        joules = integrated_energy_j(self._t, gpu.samples.get("power_w", []))
        return (joules, "integrated power samples") if joules is not None else (None, None)

    def timeline(self) -> tuple[GpuTimeline, ...]:
        """Per GPU, util/memory/power at each sample, one decimal: enough for a chart."""
        return timelines(gpu.samples for gpu in self._gpus)


def host_gpu_facts(nvml: Any = None) -> dict[str, Any]:
    """Once per session: GPU names, driver, CUDA driver, PCIe links and NVLink topology."""
    inventory = gpu_inventory(nvml)
    if inventory.reason is not None:
        return {"gpu_unavailable_reason": inventory.reason}
    facts: dict[str, Any] = {"count": len(inventory.gpus), "driver_version": inventory.driver,
                             "gpus": [{"index": g.index, "name": g.name,
                                       "memory_total_mib": g.total_mib, "uuid": g.uuid}
                                      for g in inventory.gpus]}
    handles = _open_handles(nvml, inventory)
    if isinstance(handles, str):
        return facts  # the inventory alone
    nvml = pynvml if nvml is None else nvml
    try:
        cuda = _read(nvml.nvmlSystemGetCudaDriverVersion)
        if cuda is not None:  # 12040 -> "12.4"
            facts["cuda_driver_version"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
        for entry, handle in zip(facts["gpus"], handles, strict=True):
            entry.update(_pcie(nvml, handle))
        links = _nvlinks(nvml, handles)
        facts["nvlink"] = links if links else "no NVLink: GPUs joined by PCIe"
        return facts
    finally:
        _read(nvml.nvmlShutdown)


def _pcie(nvml: Any, handle: Any) -> dict[str, int]:
    facts = {}
    for key, call in (("pcie_gen", nvml.nvmlDeviceGetCurrPcieLinkGeneration),
                      ("pcie_width", nvml.nvmlDeviceGetCurrPcieLinkWidth),
                      ("pcie_max_gen", nvml.nvmlDeviceGetMaxPcieLinkGeneration),
                      ("pcie_max_width", nvml.nvmlDeviceGetMaxPcieLinkWidth)):
        value = _read(call, handle)
        if value is not None:
            facts[key] = value
    return facts


def _nvlinks(nvml: Any, handles: Sequence[Any]) -> list[dict[str, Any]]:
    """Active NVLinks as ``{"gpu": 0, "peer": 1, "links": 4}``; a peer that is no GPU of
    ours (an NVSwitch) is named by its PCI bus id."""
    bus_ids = {}
    for index, handle in enumerate(handles):
        pci = _read(nvml.nvmlDeviceGetPciInfo, handle)
        if pci is not None:
            bus_ids[_text(pci.busId).upper()] = index
    counts: dict[tuple[int, int | str], int] = {}
    for index, handle in enumerate(handles):
        for link in range(_NVLINK_MAX_LINKS):
            if _read(nvml.nvmlDeviceGetNvLinkState, handle, link) != _FEATURE_ENABLED:
                continue
            remote = _read(nvml.nvmlDeviceGetNvLinkRemotePciInfo, handle, link)
            bus = "unknown" if remote is None else _text(remote.busId).upper()
            peer = bus_ids.get(bus, bus)
            counts[index, peer] = counts.get((index, peer), 0) + 1
    return [{"gpu": gpu, "peer": peer, "links": n} for (gpu, peer), n in counts.items()]
