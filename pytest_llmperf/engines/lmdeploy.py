"""LMDeploy: ``python -m lmdeploy serve api_server MODEL`` in the engine's own interpreter.

``python -m lmdeploy`` is the ``lmdeploy`` console script's own entry point, run by the same
interpreter that :meth:`LMDeployBackend.missing` checked, so no PATH lookup can pick another
installation.  Since LMDeploy 0.11 Prometheus metrics are on by default (``--disable-metrics``
turns them off); 0.9.2 to 0.10 need ``--llmperf-engine-args 'lmdeploy: --enable-metrics'``.
The server reports no version over HTTP, so the version is read from the installed package.
"""

from __future__ import annotations

import subprocess

from pytest_llmperf.engines.catalog import ModelEntry, ModelSource
from pytest_llmperf.engines.launched import LaunchedBackend, LaunchSpec, python_module_missing
from pytest_llmperf.observe.server_metrics import ServerMetricNames
from pytest_llmperf.settings.groups import ServerSettings

__all__ = ["LMDeployBackend"]

_VERSION_PROBE = "import importlib.metadata as m; print(m.version('lmdeploy'))"


class LMDeployBackend(LaunchedBackend):
    name = "lmdeploy"
    min_tokens_field = "min_new_tokens"  # LMDeploy's name; unknown fields are ignored silently
    install_hint = "pip install lmdeploy"
    oom_patterns = (
        "CUDA out of memory",
        "torch.OutOfMemoryError",
        "CUDA error: out of memory",
        # PyTorch engine (lmdeploy/pytorch/engine/executor/base.py).
        "No enough gpu memory for kv cache",
        "No enough gpu memory for runtime",
        "No enough gpu memory for state cache",
        # TurboMind ("[TM][ERROR] CUDA runtime error: out of memory <file>:<line>").
        "CUDA runtime error: out of memory",
    )
    metric_names = ServerMetricNames(
        ttft_seconds=("lmdeploy:time_to_first_token_seconds",),
        tpot_seconds=("lmdeploy:iter_token_latency", "lmdeploy:time_per_output_token_seconds"),
        e2e_seconds=("lmdeploy:e2e_request_latency_seconds",),
        queue_seconds=("lmdeploy:request_queue_time_seconds",),
        prompt_tokens=("lmdeploy:prompt_tokens_total",),
        generation_tokens=("lmdeploy:generation_tokens_total",),
        prefix_cache_hits=("lmdeploy:cached_tokens_total",),
        prefix_cache_queries=("lmdeploy:prompt_tokens_total",),
        kv_cache_usage=("lmdeploy:gpu_cache_usage_perc",),
        requests_running=("lmdeploy:num_requests_running",),
        requests_waiting=("lmdeploy:num_requests_waiting",),
    )

    def __init__(self) -> None:
        self._python: str | None = None  # the interpreter we launched, for version()

    def missing(self, settings: ServerSettings) -> str | None:
        return python_module_missing(settings.python_for(self.name), "lmdeploy",
                                     self.install_hint)

    def launch(
        self, settings: ServerSettings, model: ModelEntry, source: ModelSource, port: int, tp: int
    ) -> LaunchSpec:
        self._python = settings.python_for(self.name)
        argv = [
            self._python, "-m", "lmdeploy", "serve", "api_server", source.id,
            "--server-name", "127.0.0.1", "--server-port", str(port),
            "--tp", str(tp),
            "--session-len", str(settings.max_model_len),
            "--max-batch-size", str(settings.max_num_seqs),
            # Share of the GPU memory left after the weights that the KV cache takes: the
            # nearest LMDeploy has to vLLM's --gpu-memory-utilization.
            "--cache-max-entry-count", str(settings.gpu_memory_utilization),
        ]
        if source.quantization:
            # TurboMind reads gptq/awq from the checkpoint as well; naming it does no harm.
            argv += ["--model-format", source.quantization.lower()]
        if settings.prefix_caching:
            argv.append("--enable-prefix-caching")  # off by default
        argv += settings.engine_args.get(self.name, ())
        return LaunchSpec(tuple(argv))

    def version(self, root: str) -> str | None:
        if self._python is None:
            return None  # attached to a server we did not launch
        try:
            out = subprocess.run([self._python, "-c", _VERSION_PROBE], capture_output=True,
                                 text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        version = out.stdout.strip() if out.returncode == 0 else ""
        return version or None
