"""The report's environment header: the GPU line from host GPU facts."""

from __future__ import annotations

from pytest_llmperf.observe.host import gpu_summary, interconnect


def test_no_gpu_says_why() -> None:
    facts = {"gpu_unavailable_reason": "no NVIDIA GPU: NVML Shared Library Not Found"}
    assert gpu_summary(facts) == "none (no NVIDIA GPU: NVML Shared Library Not Found)"


def test_gpus_with_pcie_and_no_nvlink() -> None:
    # As read on an H100 host (device run): one GPU, PCIe gen5 x16, no NVLink.
    facts = {"count": 1, "driver_version": "580.159.04", "cuda_driver_version": "13.0",
             "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559,
                       "pcie_gen": 5, "pcie_width": 16, "pcie_max_gen": 5,
                       "pcie_max_width": 16}],
             "nvlink": "no NVLink: GPUs joined by PCIe"}
    assert gpu_summary(facts) == (
        "1 (0: NVIDIA H100 80GB HBM3 81559 MiB, PCIe gen5 x16 (max gen5 x16)), "
        "driver 580.159.04, CUDA 13.0, no NVLink: GPUs joined by PCIe")
    assert interconnect(facts) == "PCIe gen5 x16"  # what a comparison of configurations shows


def test_nvlink_pairs_are_named() -> None:
    facts = {"count": 2, "driver_version": "550.1",
             "gpus": [{"index": 0, "name": "NVIDIA RTX A6000", "memory_total_mib": 49140},
                      {"index": 1, "name": "NVIDIA RTX A6000", "memory_total_mib": 49140}],
             "nvlink": [{"gpu": 0, "peer": 1, "links": 4}, {"gpu": 1, "peer": 0, "links": 4}]}
    assert gpu_summary(facts) == (
        "2 (0: NVIDIA RTX A6000 49140 MiB; 1: NVIDIA RTX A6000 49140 MiB), driver 550.1, "
        "NVLink 0-1 x4, 1-0 x4")
    assert interconnect(facts) == "NVLink"
    assert interconnect({"gpu_unavailable_reason": "no NVIDIA GPU"}) is None


def test_this_host_gives_a_line_without_raising() -> None:
    assert gpu_summary()  # whatever this machine has, one readable line
