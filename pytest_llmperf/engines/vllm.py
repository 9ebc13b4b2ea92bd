"""vLLM: ``python -m vllm.entrypoints.openai.api_server`` in the engine's own interpreter.

Flags are those of current vLLM (``--enable-prefix-caching``/``--no-enable-prefix-caching`` and
the chunked-prefill pair are argparse ``BooleanOptionalAction``s).  vLLM-CPU takes the same
command line: its KV-cache size comes from ``VLLM_CPU_KVCACHE_SPACE`` in the environment (which
the server inherits) and ``--enforce-eager`` etc. come through ``--llmperf-engine-args``.
"""

from __future__ import annotations

import dataclasses

from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.engines.catalog import ModelEntry, ModelSource
from pytest_llmperf.engines.launched import (
    AUTO_DETECTED_QUANTIZATION,
    LaunchedBackend,
    LaunchSpec,
    get_json_field,
    python_module_missing,
)
from pytest_llmperf.engines.lifecycle import ManagedServer
from pytest_llmperf.engines.server_tokenizer import VLLMTokenizer
from pytest_llmperf.observe.server_metrics import ServerMetricNames
from pytest_llmperf.settings.groups import ServerSettings

__all__ = ["VLLMBackend"]

class VLLMBackend(LaunchedBackend):
    name = "vllm"
    install_hint = "pip install vllm"
    oom_patterns = (
        "CUDA out of memory",
        "torch.OutOfMemoryError",
        "torch.cuda.OutOfMemoryError",
        "CUDA error: out of memory",
        "No available memory for the cache blocks",
        # "To serve at least one request with the model's max seq len (...), (... GiB KV cache
        # is needed, which is larger than the available KV cache memory (... GiB)."
        "larger than the available KV cache memory",
        # "Free memory on device (...) on startup is less than desired GPU memory utilization"
        "is less than desired GPU memory utilization",
    )
    metric_names = ServerMetricNames(
        ttft_seconds=("vllm:time_to_first_token_seconds",),
        # Per-token inter-token latency; vLLM >= 0.11 renamed the old TPOT histogram.
        tpot_seconds=("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds",
                      "vllm:request_time_per_output_token_seconds"),
        e2e_seconds=("vllm:e2e_request_latency_seconds",),
        queue_seconds=("vllm:request_queue_time_seconds",),
        prompt_tokens=("vllm:prompt_tokens_total",),
        generation_tokens=("vllm:generation_tokens_total",),
        preemptions=("vllm:num_preemptions_total",),
        prefix_cache_hits=("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
        prefix_cache_queries=("vllm:prefix_cache_queries_total",
                              "vllm:gpu_prefix_cache_queries_total"),
        kv_cache_usage=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        requests_running=("vllm:num_requests_running",),
        requests_waiting=("vllm:num_requests_waiting",),
        spec_draft_tokens=("vllm:spec_decode_num_draft_tokens_total",),
        spec_accepted_tokens=("vllm:spec_decode_num_accepted_tokens_total",),
        spec_drafts=("vllm:spec_decode_num_drafts_total",),
    )

    def missing(self, settings: ServerSettings) -> str | None:
        return python_module_missing(settings.python_for(self.name), "vllm", self.install_hint)

    def launch(
        self, settings: ServerSettings, model: ModelEntry, source: ModelSource, port: int, tp: int
    ) -> LaunchSpec:
        # The served name stays vLLM's default (the --model value), which model_id() sends.
        argv = [
            settings.python_for(self.name), "-m", "vllm.entrypoints.openai.api_server",
            "--model", source.id, "--host", "127.0.0.1", "--port", str(port),
            "--tensor-parallel-size", str(tp),
            "--max-model-len", str(settings.max_model_len),
            "--max-num-seqs", str(settings.max_num_seqs),
            "--gpu-memory-utilization", str(settings.gpu_memory_utilization),
        ]
        if source.quantization and source.quantization.lower() not in AUTO_DETECTED_QUANTIZATION:
            argv += ["--quantization", source.quantization]
        # Explicit both ways: vLLM V1 turns prefix caching on by default.
        argv.append("--enable-prefix-caching" if settings.prefix_caching
                    else "--no-enable-prefix-caching")
        if settings.chunked_prefill is not None:
            argv.append("--enable-chunked-prefill" if settings.chunked_prefill
                        else "--no-enable-chunked-prefill")
        argv += settings.engine_args.get(self.name, ())
        return LaunchSpec(tuple(argv))

    def version(self, root: str) -> str | None:
        return get_json_field(f"{root}/version", "version")

    def served(
        self, settings: ServerSettings, model: ModelEntry, source: ModelSource, root: str,
        server: ManagedServer | None,
    ) -> ServedModel:
        """vLLM's own tokenizer endpoints; a launched server's context is --max-model-len."""
        served = super().served(settings, model, source, root, server)
        return dataclasses.replace(
            served, tokenizer=VLLMTokenizer(root, self.model_id(source), settings.api_key()),
            context_tokens=settings.max_model_len if server else served.context_tokens)
