"""The host's NVIDIA GPUs as NVML lists them, or why there are none.

NVML (``pynvml``, from nvidia-ml-py) is imported only when asked: it is absent or cannot load
its shared library on machines without an NVIDIA driver, and that is an answer, not an error.
Indices are NVML's, which follow PCI bus order: ``CUDA_VISIBLE_DEVICES`` and ``--gpus`` name
the same GPUs when ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (or when all GPUs are alike).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

__all__ = ["GpuInfo", "GpuInventory", "gpu_inventory"]


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str  # "NVIDIA H100 80GB HBM3"
    total_mib: int
    uuid: str

    @property
    def total_bytes(self) -> int:
        return self.total_mib * 2**20


@dataclass(frozen=True)
class GpuInventory:
    """Every GPU NVML sees; when there are none, ``reason`` says why."""

    gpus: tuple[GpuInfo, ...] = ()
    reason: str | None = None
    driver: str | None = None

    def by_index(self, index: int) -> GpuInfo | None:
        return next((gpu for gpu in self.gpus if gpu.index == index), None)


def gpu_inventory(nvml: Any = None) -> GpuInventory:
    """The GPUs of this host.  ``nvml`` stands in for the ``pynvml`` module in tests."""
    if nvml is None:
        try:
            import pynvml
        except ImportError as exc:
            return GpuInventory(reason=f"no NVIDIA GPU: nvidia-ml-py is not installed ({exc})")
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception as exc:  # no library, no driver, driver/library mismatch: all "no GPU"
        return GpuInventory(reason=f"no NVIDIA GPU: {_message(exc)}")
    try:
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            gpus.append(GpuInfo(
                index=index,
                name=_text(nvml.nvmlDeviceGetName(handle)),
                total_mib=int(nvml.nvmlDeviceGetMemoryInfo(handle).total) // 2**20,
                uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
            ))
        driver = _text(nvml.nvmlSystemGetDriverVersion())
    except Exception as exc:  # a device NVML cannot read (fallen off the bus, ...)
        return GpuInventory(reason=f"NVML failed to list the GPUs: {_message(exc)}")
    finally:
        with contextlib.suppress(Exception):  # nothing left to release if this fails
            nvml.nvmlShutdown()
    if not gpus:
        return GpuInventory(reason="no NVIDIA GPU: NVML found 0 devices", driver=driver)
    return GpuInventory(tuple(gpus), driver=driver)


def _text(value: object) -> str:
    # Older nvidia-ml-py returns bytes, newer str.
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _message(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
