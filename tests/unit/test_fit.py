"""The GPU-memory fit pre-check on catalogue models and synthetic GPUs, and the NVML inventory.

GPU sizes are what NVML reports for real cards (MiB): RTX 4090 24564, RTX A6000 49140,
H100 80GB 81559.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_llmperf.engines.catalog import ModelEntry, ModelSource, builtin_catalog
from pytest_llmperf.engines.fit import ModelDoesNotFit, check_fit, memory_need
from pytest_llmperf.observe.gpus import GpuInfo, GpuInventory, gpu_inventory
from pytest_llmperf.settings.groups import ServerSettings
from pytest_llmperf.settings.resolve import resolve_settings

CATALOG = builtin_catalog()
NO_CUDA_ENV: dict[str, str] = {}


@pytest.fixture
def settings(tmp_path: Path) -> ServerSettings:
    # The defaults: max_model_len 4096, max_num_seqs 8, gpu_memory_utilization 0.9.
    return resolve_settings({}, {}, {}, tmp_path).server


def gpus(count: int, name: str, mib: int) -> GpuInventory:
    return GpuInventory(tuple(GpuInfo(i, name, mib, f"GPU-{i:04d}") for i in range(count)))


RTX4090 = ("NVIDIA GeForce RTX 4090", 24564)
A6000 = ("NVIDIA RTX A6000", 49140)
H100 = ("NVIDIA H100 80GB HBM3", 81559)


def check(settings: ServerSettings, alias: str, inventory: GpuInventory, *, tp: int,
          gpu_ids: tuple[int, ...] | None, backend: str = "vllm") -> None:
    entry = CATALOG.entries[alias]
    source = entry.source(("hf", "ollama", "gguf"))
    assert source is not None
    check_fit(settings, backend, entry, source, tp=tp, gpus=gpu_ids, inventory=inventory,
              env=NO_CUDA_ENV)


def test_qwen72b_gptq_does_not_fit_one_24_gib_gpu_and_says_why(settings: ServerSettings) -> None:
    with pytest.raises(ModelDoesNotFit) as caught:
        check(settings, "qwen72b-gptq", gpus(1, *RTX4090), tp=1, gpu_ids=(0,))
    # 72.7e9 x 4.6 / 8 = 41.80 GB, x 1.1 = 45.98 GB; KV 2*80*8*128*4096*8*2 = 10.74 GB;
    # + 1 GiB: 57.79e9 B = 53.8 GiB.  Budget 24564 MiB x 0.9 = 21.6 GiB.
    assert str(caught.value).startswith(
        "qwen72b-gptq on vllm needs about 53.8 GiB: weights 72.7e9 params x 4.6 bits / 8 = "
        "41.8 GB + 10 % = 46.0 GB, KV cache 2 x 80 layers x 8 KV heads x 128 dims x 4096 "
        "tokens x 8 sequences x 2 bytes = 10.7 GB, 1 GiB per GPU; it has 21.6 GiB: "
        "1 x NVIDIA GeForce RTX 4090 24564 MiB x 0.9 (--gpus 0); "
        "the weights alone do not fit")


def test_qwen72b_gptq_fits_two_a6000_at_tp_2(settings: ServerSettings) -> None:
    # 53.8 + 1 GiB (second GPU) = 54.8 GiB <= 2 x 48 GiB x 0.9 = 86.4 GiB
    check(settings, "qwen72b-gptq", gpus(2, *A6000), tp=2, gpu_ids=(0, 1))
    check(settings, "qwen72b-gptq", gpus(2, *A6000), tp=2, gpu_ids=None)


def test_qwen32b_gptq_fits_one_80_gib_gpu(settings: ServerSettings) -> None:
    check(settings, "qwen32b-gptq", gpus(1, *H100), tp=1, gpu_ids=None)


def test_deepseek_r1_llama70b_bf16_does_not_fit_two_h100(settings: ServerSettings) -> None:
    # 70.6e9 x 2 bytes x 1.1 = 155.3 GB = 144.6 GiB of weights alone, over 2 x 79.6 x 0.9;
    # + KV 10.7 GB + 2 GiB = 168.2e9 B = 156.7 GiB in all.
    with pytest.raises(ModelDoesNotFit, match=r"needs about 156\.7 GiB.*it has 143\.4 GiB: "
                       r"2 x NVIDIA H100 80GB HBM3 81559 MiB x 0\.9 \(--gpus 0,1\); "
                       r"the weights alone do not fit"):
        check(settings, "deepseek-r1-llama70b", gpus(2, *H100), tp=2, gpu_ids=(0, 1))


def test_engines_that_do_not_reserve_a_share_get_the_whole_gpu(settings: ServerSettings) -> None:
    # 156.7 GiB needed: over vLLM's 0.9 share of 2 x 79.6 GiB, under TGI's whole 159.3 GiB.
    check(settings, "deepseek-r1-llama70b", gpus(2, *H100), tp=2, gpu_ids=None, backend="tgi")


def test_kv_cache_settings_enter_the_estimate(settings: ServerSettings) -> None:
    # qwen32b-gptq fits a 24 GiB card with a short context and few sequences, not with many.
    small = dataclasses.replace(settings, max_model_len=2048, max_num_seqs=1)
    check(small, "qwen32b-gptq", gpus(1, *RTX4090), tp=1, gpu_ids=None)
    big = dataclasses.replace(settings, max_model_len=32768, max_num_seqs=8)
    with pytest.raises(ModelDoesNotFit, match="lower --llmperf-max-model-len"):
        check(big, "qwen32b-gptq", gpus(1, *H100), tp=1, gpu_ids=None)


def test_tp_larger_than_the_gpus_given(settings: ServerSettings) -> None:
    with pytest.raises(ModelDoesNotFit, match=r"tensor parallelism 2, but --gpus 0 gives 1 GPU"):
        check(settings, "qwen72b-gptq", gpus(4, *A6000), tp=2, gpu_ids=(0,))
    # Needs no NVML: said even on a host where none loads.
    with pytest.raises(ModelDoesNotFit, match="tensor parallelism 4"):
        check(settings, "deepseek-r1-llama70b", GpuInventory(reason="no NVIDIA GPU"), tp=4,
              gpu_ids=(0, 1))


def test_tp_larger_than_the_host(settings: ServerSettings) -> None:
    with pytest.raises(ModelDoesNotFit, match=r"tensor parallelism 2, but the host has 1 usable"
                                              r" GPU \(1 x NVIDIA GeForce RTX 4090 24564 MiB\)"):
        check(settings, "qwen72b-gptq", gpus(1, *RTX4090), tp=2, gpu_ids=None)


def test_cuda_visible_devices_limits_the_gpus_when_no_gpus_are_given(
    settings: ServerSettings,
) -> None:
    entry = CATALOG.entries["qwen72b-gptq"]
    source = entry.sources["hf"]
    inventory = gpus(4, *A6000)
    with pytest.raises(ModelDoesNotFit, match="but CUDA_VISIBLE_DEVICES=3 leaves 1 usable GPU"):
        check_fit(settings, "vllm", entry, source, tp=2, gpus=None, inventory=inventory,
                  env={"CUDA_VISIBLE_DEVICES": "3"})
    check_fit(settings, "vllm", entry, source, tp=2, gpus=None, inventory=inventory,
              env={"CUDA_VISIBLE_DEVICES": "GPU-0002,1"})


def test_a_gpu_index_the_host_lacks(settings: ServerSettings) -> None:
    with pytest.raises(ModelDoesNotFit, match="--gpus 0,5 names GPU 5, but NVML sees 2 x"):
        check(settings, "qwen72b-gptq", gpus(2, *A6000), tp=2, gpu_ids=(0, 5))


def test_missing_size_facts_give_no_verdict(settings: ServerSettings) -> None:
    raw = CATALOG.resolve("org/some-model", "--model")
    assert raw.params_b is None
    check_fit(settings, "vllm", raw, raw.sources["hf"], tp=1, gpus=(0,),
              inventory=gpus(1, *RTX4090), env=NO_CUDA_ENV)
    partial = ModelEntry("half-known", {"hf": ModelSource("hf", "x/y", bits=16)}, params_b=400)
    check_fit(settings, "vllm", partial, partial.sources["hf"], tp=1, gpus=None,
              inventory=gpus(1, *RTX4090), env=NO_CUDA_ENV)


def test_no_gpu_gives_no_verdict(settings: ServerSettings) -> None:
    check(settings, "deepseek-r1-llama70b",
          GpuInventory(reason="no NVIDIA GPU: NVML Shared Library Not Found"), tp=1, gpu_ids=None)


def test_bits_default_to_16_when_the_source_does_not_say(settings: ServerSettings) -> None:
    entry = CATALOG.entries["qwen32b-gptq"]
    need = memory_need(settings, entry, ModelSource("hf", "x/y"), tp=1)
    assert need is not None
    assert need.weights == pytest.approx(32.8e9 * 2 * 1.1)
    assert "x 16 bits (assumed) / 8" in need.text


# --- NVML inventory ------------------------------------------------------------------------


class FakeNVMLError(Exception):
    pass


def fake_nvml(devices: list[tuple[Any, int, Any]], *, init_error: str | None = None) -> Any:
    """A stand-in for pynvml: devices are (name, total bytes, uuid)."""

    def init() -> None:
        if init_error is not None:
            raise FakeNVMLError(init_error)

    shutdowns: list[bool] = []
    return SimpleNamespace(
        nvmlInit=init,
        nvmlShutdown=lambda: shutdowns.append(True),
        nvmlDeviceGetCount=lambda: len(devices),
        nvmlDeviceGetHandleByIndex=lambda i: devices[i],
        nvmlDeviceGetName=lambda handle: handle[0],
        nvmlDeviceGetMemoryInfo=lambda handle: SimpleNamespace(total=handle[1], free=0, used=0),
        nvmlDeviceGetUUID=lambda handle: handle[2],
        nvmlSystemGetDriverVersion=lambda: "550.54.15",
        shutdowns=shutdowns,
    )


def test_inventory_lists_every_gpu() -> None:
    nvml = fake_nvml([("NVIDIA H100 80GB HBM3", 81559 * 2**20, "GPU-aaaa"),
                      (b"NVIDIA RTX A6000", 49140 * 2**20, b"GPU-bbbb")])  # old pynvml: bytes
    inventory = gpu_inventory(nvml)
    assert inventory.reason is None
    assert inventory.driver == "550.54.15"
    assert inventory.gpus == (GpuInfo(0, "NVIDIA H100 80GB HBM3", 81559, "GPU-aaaa"),
                              GpuInfo(1, "NVIDIA RTX A6000", 49140, "GPU-bbbb"))
    assert nvml.shutdowns == [True]


def test_inventory_says_why_there_is_no_gpu() -> None:
    missing = gpu_inventory(fake_nvml([], init_error="NVML Shared Library Not Found"))
    assert missing == GpuInventory(reason="no NVIDIA GPU: NVML Shared Library Not Found")
    empty = gpu_inventory(fake_nvml([]))
    assert empty.gpus == ()
    assert empty.reason == "no NVIDIA GPU: NVML found 0 devices"


def test_inventory_on_this_host_never_raises() -> None:
    inventory = gpu_inventory()
    assert bool(inventory.gpus) != bool(inventory.reason)
