"""GPU-memory fit pre-check: say before launching that a model cannot fit, and why.

Loading a 72B model takes minutes before the engine finds out it is out of memory; this
estimate takes microseconds.  It is deliberately simple and a little generous, because a wrong
"does not fit" skips a test that would have run:

- weights = params x bits per weight / 8 (bits from the catalogue source, else 16), + 10 %
  for embeddings, norms, quantization scales and the engine's own buffers;
- KV cache = 2 (K and V) x layers x KV heads x head dim x context x sequences x 2 bytes
  (fp16), with context = ``--llmperf-max-model-len`` and sequences = ``--llmperf-max-num-seqs``;
- 1 GiB per GPU for the CUDA context and activations.

The budget is the total memory of the ``tp`` GPUs used (the first ``tp`` of ``--gpus``, else
of the visible GPUs), times ``--llmperf-gpu-memory-utilization`` for the engines that reserve
only that share (vLLM, SGLang, LMDeploy).  With no size facts (an engine's raw model id) or no
GPU seen by NVML (CPU engines may still run) there is no verdict.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_llmperf.engines.catalog import ModelEntry, ModelSource
from pytest_llmperf.observe.gpus import GpuInfo, GpuInventory, gpu_inventory
from pytest_llmperf.settings.groups import ServerSettings

__all__ = ["RESERVING_BACKENDS", "MemoryNeed", "ModelDoesNotFit", "check_fit", "memory_need"]


class ModelDoesNotFit(Exception):
    """The model cannot fit the GPUs it would get; the message holds the arithmetic."""

# Engines that take gpu_memory_utilization x total up front and never more.
RESERVING_BACKENDS = frozenset({"vllm", "sglang", "lmdeploy"})
_OVERHEAD = 0.10  # on top of the weights
_PER_GPU_BYTES = 2**30  # CUDA context and activations
_KV_DTYPE_BYTES = 2  # fp16/bf16 KV cache
_DEFAULT_BITS = 16.0
_GB = 1e9
_GIB = 2**30


def check_fit(
    settings: ServerSettings, backend: str, model: ModelEntry, source: ModelSource, *, tp: int,
    gpus: tuple[int, ...] | None, inventory: GpuInventory | None = None,
    env: Mapping[str, str] = os.environ,
) -> None:
    """Raise :class:`ModelDoesNotFit` when ``model`` clearly cannot fit the GPUs it would get
    (or there are fewer GPUs than ``tp``); return quietly when it fits or nobody can tell."""
    where = _where(gpus, env)
    if gpus is not None and tp > len(gpus):
        raise ModelDoesNotFit(f"{model.alias} on {backend} needs tensor parallelism {tp}, but "
                              f"{where} gives {_count(len(gpus), 'GPU')}")
    if inventory is None:
        inventory = gpu_inventory()
    if not inventory.gpus:
        return  # no NVIDIA GPU: a CPU engine may still serve it; nothing to say
    candidates = _candidates(inventory, gpus, env, where)
    if tp > len(candidates):
        has = "the host has" if gpus is None and where == "all GPUs" else f"{where} leaves"
        raise ModelDoesNotFit(
            f"{model.alias} on {backend} needs tensor parallelism {tp}, but {has} "
            f"{_count(len(candidates), 'usable GPU')} ({_describe(candidates)})")
    need = memory_need(settings, model, source, tp=tp)
    if need is None:
        return
    used = candidates[:tp]
    share = settings.gpu_memory_utilization if backend in RESERVING_BACKENDS else 1.0
    budget = sum(gpu.total_bytes for gpu in used) * share
    if need.total <= budget:
        return
    hint = ("the weights alone do not fit: give more GPUs or take a smaller quantization"
            if need.total - need.kv > budget else
            "lower --llmperf-max-model-len or --llmperf-max-num-seqs, or give more GPUs")
    raise ModelDoesNotFit(
        f"{model.alias} on {backend} needs about {need.total / _GIB:.1f} GiB: {need.text}; it "
        f"has {budget / _GIB:.1f} GiB: {_describe(used, share)} ({where}); {hint}")


@dataclass(frozen=True)
class MemoryNeed:
    weights: float  # bytes, overhead included
    kv: float
    per_gpu: float  # all GPUs together
    text: str  # the arithmetic in words

    @property
    def total(self) -> float:
        return self.weights + self.kv + self.per_gpu


def memory_need(
    settings: ServerSettings, model: ModelEntry, source: ModelSource, *, tp: int
) -> MemoryNeed | None:
    """What the model needs over ``tp`` GPUs; None when the catalogue lacks a size fact."""
    if None in (model.params_b, model.layers, model.kv_heads, model.head_dim):
        return None
    assert model.params_b is not None and model.layers is not None  # for mypy
    assert model.kv_heads is not None and model.head_dim is not None
    bits = source.bits if source.bits is not None else _DEFAULT_BITS
    raw_weights = model.params_b * 1e9 * bits / 8
    weights = raw_weights * (1 + _OVERHEAD)
    context, sequences = settings.max_model_len, settings.max_num_seqs
    kv = (2 * model.layers * model.kv_heads * model.head_dim * context * sequences
          * _KV_DTYPE_BYTES)
    per_gpu = _PER_GPU_BYTES * tp
    bits_text = f"{bits:g} bits" + ("" if source.bits is not None else " (assumed)")
    explanation = (
        f"weights {model.params_b:g}e9 params x {bits_text} / 8 = {raw_weights / _GB:.1f} GB "
        f"+ {_OVERHEAD * 100:g} % = {weights / _GB:.1f} GB, KV cache 2 x {model.layers} layers x "
        f"{model.kv_heads} KV heads x {model.head_dim} dims x {context} tokens x {sequences} "
        f"sequences x {_KV_DTYPE_BYTES} bytes = {kv / _GB:.1f} GB, 1 GiB per GPU"
        + (f" x {tp}" if tp > 1 else "")
    )
    return MemoryNeed(weights, kv, per_gpu, explanation)


def _candidates(
    inventory: GpuInventory, gpus: tuple[int, ...] | None, env: Mapping[str, str], where: str
) -> list[GpuInfo]:
    """The GPUs the engine may use, in the order it takes them."""
    if gpus is not None:
        chosen = [gpu for gpu in map(inventory.by_index, gpus) if gpu is not None]
        if len(chosen) < len(gpus):
            missing = sorted(set(gpus) - {gpu.index for gpu in chosen})
            raise ModelDoesNotFit(
                f"{where} names GPU {', '.join(map(str, missing))}, but NVML sees "
                f"{_describe(inventory.gpus)}")
        return chosen
    visible = _visible(inventory, env.get("CUDA_VISIBLE_DEVICES"))
    return visible if visible is not None else list(inventory.gpus)


def _visible(inventory: GpuInventory, value: str | None) -> list[GpuInfo] | None:
    """``CUDA_VISIBLE_DEVICES`` resolved against NVML (indices or UUIDs) as CUDA reads it:
    the list ends at the first entry naming no GPU.  None when unset or naming MIG instances
    (their memory is not the GPU's): then every GPU counts."""
    if value is None:
        return None
    found: list[GpuInfo] = []
    for item in (part.strip() for part in value.split(",")):
        if item.startswith("MIG-"):
            return None
        if item.isdigit():
            gpu = inventory.by_index(int(item))
        else:
            gpu = next((g for g in inventory.gpus if item and g.uuid.startswith(item)), None)
        if gpu is None:
            break
        found.append(gpu)
    return found


def _describe(gpus: Sequence[GpuInfo], share: float = 1.0) -> str:
    """``2 x NVIDIA RTX A6000 49140 MiB x 0.9``, one term per kind of GPU."""
    if not gpus:
        return "no GPU"
    kinds: dict[tuple[str, int], int] = {}
    for gpu in gpus:
        kinds[(gpu.name, gpu.total_mib)] = kinds.get((gpu.name, gpu.total_mib), 0) + 1
    factor = f" x {share:g}" if share != 1.0 else ""
    return " + ".join(f"{count} x {name} {mib} MiB{factor}"
                      for (name, mib), count in kinds.items())


def _where(gpus: tuple[int, ...] | None, env: Mapping[str, str]) -> str:
    if gpus is not None:
        return f"--gpus {','.join(map(str, gpus))}"
    if env.get("CUDA_VISIBLE_DEVICES") is not None:
        return f"CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}"
    return "all GPUs"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")
