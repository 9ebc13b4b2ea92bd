"""SGLang: ``python -m sglang.launch_server`` in the engine's own interpreter.

Prometheus metrics are off unless ``--enable-metrics`` is given, so it always is.  The radix
(prefix) cache is on by default and is turned off unless ``--llmperf-prefix-caching yes``.
"""

from __future__ import annotations

from pytest_llmperf.engines.catalog import ModelEntry, ModelSource
from pytest_llmperf.engines.launched import (
    AUTO_DETECTED_QUANTIZATION,
    LaunchedBackend,
    LaunchSpec,
    get_json_field,
    python_module_missing,
)
from pytest_llmperf.observe.server_metrics import ServerMetricNames
from pytest_llmperf.settings.groups import ServerSettings

__all__ = ["SGLangBackend"]


class SGLangBackend(LaunchedBackend):
    name = "sglang"
    install_hint = "pip install sglang"
    oom_patterns = (
        "CUDA out of memory",
        "torch.OutOfMemoryError",
        "torch.cuda.OutOfMemoryError",
        "CUDA error: out of memory",
        # Raised when weights leave no room for the KV pool (model_runner / pool_configurator).
        "Not enough memory. Please try to increase --mem-fraction-static",
    )
    metric_names = ServerMetricNames(
        ttft_seconds=("sglang:time_to_first_token_seconds",),
        tpot_seconds=("sglang:inter_token_latency_seconds",
                      "sglang:time_per_output_token_seconds"),
        e2e_seconds=("sglang:e2e_request_latency_seconds",),
        queue_seconds=("sglang:queue_time_seconds",),
        prompt_tokens=("sglang:prompt_tokens_total",),
        generation_tokens=("sglang:generation_tokens_total",),
        preemptions=("sglang:num_retracted_requests_total",),
        # Cached prompt tokens over all prompt tokens: the same ratio vLLM's counters give.
        prefix_cache_hits=("sglang:cached_tokens_total",),
        prefix_cache_queries=("sglang:prompt_tokens_total",),
        kv_cache_usage=("sglang:token_usage",),
        requests_running=("sglang:num_running_reqs",),
        requests_waiting=("sglang:num_queue_reqs",),
        spec_rate_gauge=("sglang:spec_accept_rate",),
        spec_length_gauge=("sglang:spec_accept_length",),
    )

    def missing(self, settings: ServerSettings) -> str | None:
        return python_module_missing(settings.python_for(self.name), "sglang", self.install_hint)

    def launch(
        self, settings: ServerSettings, model: ModelEntry, source: ModelSource, port: int, tp: int
    ) -> LaunchSpec:
        argv = [
            settings.python_for(self.name), "-m", "sglang.launch_server",
            "--model-path", source.id, "--host", "127.0.0.1", "--port", str(port),
            "--tp-size", str(tp),
            "--context-length", str(settings.max_model_len),
            "--max-running-requests", str(settings.max_num_seqs),
            "--mem-fraction-static", str(settings.gpu_memory_utilization),
            "--enable-metrics",
        ]
        # gptq/awq are read from the checkpoint; naming them forces the non-Marlin kernel.
        if source.quantization and source.quantization.lower() not in AUTO_DETECTED_QUANTIZATION:
            argv += ["--quantization", source.quantization]
        if not settings.prefix_caching:
            argv.append("--disable-radix-cache")
        argv += settings.engine_args.get(self.name, ())
        return LaunchSpec(tuple(argv))

    def version(self, root: str) -> str | None:
        # /server_info is the current name; /get_server_info the one before (now deprecated).
        return (get_json_field(f"{root}/server_info", "version")
                or get_json_field(f"{root}/get_server_info", "version"))
