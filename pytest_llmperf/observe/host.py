"""Facts about the machine and the checkout, for the report's environment header."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

__all__ = ["cpu_model", "gpu_summary", "host_facts", "host_fingerprint", "interconnect"]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_summary(facts: Mapping[str, Any] | None = None) -> str:
    """GPUs, driver, CUDA, PCIe links and NVLink topology in one line, or why there are none.

    ``facts`` is :func:`pytest_llmperf.observe.gpu.host_gpu_facts` (read here when None).
    """
    if facts is None:
        from pytest_llmperf.observe.gpu import host_gpu_facts

        facts = host_gpu_facts()
    if facts.get("gpu_unavailable_reason"):
        return f"none ({facts['gpu_unavailable_reason']})"
    gpus = []
    for gpu in facts.get("gpus", []):
        text = f"{gpu['index']}: {gpu['name']} {gpu['memory_total_mib']:.0f} MiB"
        if "pcie_gen" in gpu:
            text += f", PCIe gen{gpu['pcie_gen']} x{gpu.get('pcie_width', '?')}"
            if "pcie_max_gen" in gpu:
                text += f" (max gen{gpu['pcie_max_gen']} x{gpu.get('pcie_max_width', '?')})"
        gpus.append(text)
    parts = [f"{facts.get('count', len(gpus))} ({'; '.join(gpus)})"]
    if facts.get("driver_version"):
        parts.append(f"driver {facts['driver_version']}")
    if facts.get("cuda_driver_version"):
        parts.append(f"CUDA {facts['cuda_driver_version']}")
    links = facts.get("nvlink")
    if isinstance(links, str):
        parts.append(links)
    elif links:
        parts.append("NVLink " + ", ".join(f"{link['gpu']}-{link['peer']} x{link['links']}"
                                           for link in links))
    return ", ".join(parts)


def interconnect(facts: Mapping[str, Any]) -> str | None:
    """How the GPUs talk: ``NVLink`` where any pair is linked, else the first GPU's PCIe link
    (``PCIe gen4 x16``); None without GPUs or where NVML did not say."""
    links = facts.get("nvlink")
    if isinstance(links, list) and links:
        return "NVLink"
    gpus = facts.get("gpus") or []
    if gpus and "pcie_gen" in gpus[0]:
        return f"PCIe gen{gpus[0]['pcie_gen']} x{gpus[0].get('pcie_width', '?')}"
    return None


def _git_commit(rootdir: Path) -> str:
    try:
        head = subprocess.run(["git", "-C", str(rootdir), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True).stdout
        dirty = subprocess.run(["git", "-C", str(rootdir), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return head.strip() + (" (uncommitted changes)" if dirty.strip() else "")


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def host_facts(rootdir: Path) -> dict[str, str]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date (UTC)": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "host": platform.node(),
        "CPU": f"{cpu_model()}, {cores} usable cores",
        "RAM": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "GPU": gpu_summary(),
        "OS / Python": f"{platform.platform()} / Python {platform.python_version()}",
        "pytest-llmperf": _version("pytest-llmperf"),
        "git commit": _git_commit(rootdir),
    }


def host_fingerprint(rootdir: Path, gpu_facts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What must match for two runs to be compared: the hardware and the software around the
    engine (each engine, model file and hash is in its window's entry).  ``gpu_facts`` is
    :func:`pytest_llmperf.observe.gpu.host_gpu_facts` (read here when None)."""
    if gpu_facts is None:
        from pytest_llmperf.observe.gpu import host_gpu_facts

        gpu_facts = host_gpu_facts()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "hostname": platform.node(),  # told, never compared: a CI runner's name changes
        "cpu_model": cpu_model(),
        "cpu_cores": cores,
        "gpu_models": [gpu["name"] for gpu in gpu_facts.get("gpus", [])],
        "gpu_count": len(gpu_facts.get("gpus", [])),
        "gpu_driver": gpu_facts.get("driver_version"),
        "interconnect": interconnect(gpu_facts),  # told, not compared
        "cuda": gpu_facts.get("cuda_driver_version"),
        "gpu_unavailable_reason": gpu_facts.get("gpu_unavailable_reason"),
        "os": platform.platform(),
        "python": platform.python_version(),
        "pytest_llmperf": _version("pytest-llmperf"),
        "git_commit": _git_commit(rootdir),
    }
