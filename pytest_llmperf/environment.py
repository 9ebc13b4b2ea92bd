"""Facts about the machine and the checkout, for the report's environment header."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import psutil

__all__ = ["cpu_model", "gpu_summary", "host_facts"]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_summary() -> str:
    """NVIDIA GPUs by name and memory, or why there are none; NVML loads only here."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # no driver, no library, no device: all mean "no GPU" here
        return f"none (no NVIDIA GPU: {type(exc).__name__}: {exc})"
    try:
        count = pynvml.nvmlDeviceGetCount()
        names = []
        for index in range(count):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**30
            names.append(f"{index}: {name} {memory:.0f} GiB")
        driver = pynvml.nvmlSystemGetDriverVersion()
        return f"{count} ({'; '.join(names)}), driver {driver}" if count else "none (0 devices)"
    finally:
        pynvml.nvmlShutdown()


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
        "date (UTC)": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "host": platform.node(),
        "CPU": f"{cpu_model()}, {cores} usable cores",
        "RAM": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "GPU": gpu_summary(),
        "OS / Python": f"{platform.platform()} / Python {platform.python_version()}",
        "pytest-llmperf": _version("pytest-llmperf"),
        "git commit": _git_commit(rootdir),
    }
