"""Hugging Face Text Generation Inference: ``text-generation-launcher`` and the OpenAI route.

TGI is a native program (launcher, Rust router and Python shards), normally run from its
Docker image; a local install needs all three on PATH.  Otherwise run the image yourself and
attach with ``--base-url http://HOST:PORT/v1``.

What differs from the other engines:

- Its OpenAI route has no ``ignore_eos``/``min_tokens`` (nor does its native ``/generate``):
  unknown request fields are dropped silently, so an answer may end early at EOS; the record's
  ``finish_reason`` ("stop" rather than "length") says when it did.
- Prefix caching is switched with the ``PREFIX_CACHING`` environment variable, not a flag.
- Its Prometheus metrics have no time-to-first-token histogram and no token counters: the
  ``_sum`` of the per-request token-count histograms serve as counters.
"""

from __future__ import annotations

import shutil

from pytest_llmperf.engines.catalog import ModelEntry, ModelSource
from pytest_llmperf.engines.launched import LaunchedBackend, LaunchSpec, get_json_field
from pytest_llmperf.engines.lifecycle import free_port
from pytest_llmperf.observe.server_metrics import ServerMetricNames
from pytest_llmperf.settings.groups import ServerSettings

__all__ = ["TGIBackend"]

LAUNCHER = "text-generation-launcher"
# The launcher starts these two; a local install without them fails only at launch.
_HELPERS = ("text-generation-router", "text-generation-server")
# The launcher's --max-batch-prefill-tokens default for text models (launcher/src/main.rs).
_DEFAULT_PREFILL_TOKENS = 4096


class TGIBackend(LaunchedBackend):
    name = "tgi"
    min_tokens_field = None  # TGI has no ignore_eos/min_tokens (see the module docstring)
    install_hint = ("install text-generation-inference locally (text-generation-launcher, "
                    "-router and -server on PATH) or run the "
                    "ghcr.io/huggingface/text-generation-inference image and attach with "
                    "--base-url http://HOST:PORT/v1")
    oom_patterns = (
        "CUDA out of memory",
        "torch.OutOfMemoryError",
        "torch.cuda.OutOfMemoryError",
        "CUDA error: out of memory",
        # Warm-up: "Not enough memory to handle N prefill tokens. You need to decrease
        # `--max-batch-prefill-tokens`"; router: "Not enough memory to handle
        # `max_total_tokens=N`".
        "Not enough memory to handle",
    )
    metric_names = ServerMetricNames(
        tpot_seconds=("tgi_request_mean_time_per_token_duration",),
        e2e_seconds=("tgi_request_duration",),
        queue_seconds=("tgi_request_queue_duration",),
        prompt_tokens=("tgi_request_input_length_sum",),
        generation_tokens=("tgi_request_generated_tokens_sum",),
        requests_running=("tgi_batch_current_size",),
        requests_waiting=("tgi_queue_size",),
    )

    def missing(self, settings: ServerSettings) -> str | None:
        absent = [name for name in (LAUNCHER, *_HELPERS) if shutil.which(name) is None]
        if not absent:
            return None
        return f"{', '.join(absent)} not found on PATH; {self.install_hint}"

    def launch(
        self, settings: ServerSettings, model: ModelEntry, source: ModelSource, port: int, tp: int
    ) -> LaunchSpec:
        argv = [
            LAUNCHER, "--model-id", source.id, "--hostname", "127.0.0.1", "--port", str(port),
            "--num-shard", str(tp),
            # A request's prompt plus max_tokens must fit max_total_tokens; the prompt alone
            # must be shorter.
            "--max-input-tokens", str(settings.max_model_len - 1),
            "--max-total-tokens", str(settings.max_model_len),
            # Requests run at once; the rest wait in TGI's queue.  --max-concurrent-requests
            # (default 128) would refuse them with HTTP 429 instead, so it is left alone.
            "--max-batch-size", str(settings.max_num_seqs),
            "--cuda-memory-fraction", str(settings.gpu_memory_utilization),
            # Defaults shared by every TGI on the machine (/tmp/text-generation-server,
            # master port 29500) would collide between pytest-xdist workers.
            "--shard-uds-path", f"/tmp/llmperf-tgi-{port}",
        ]
        if settings.max_model_len - 1 > _DEFAULT_PREFILL_TOKENS:
            # Without chunked prefill the router refuses a prefill budget below the longest
            # prompt; TGI's own default budget stays where it suffices.
            argv += ["--max-batch-prefill-tokens", str(settings.max_model_len)]
        if tp > 1:
            argv += ["--master-port", str(free_port())]
        if source.quantization:
            # Read from the checkpoint anyway; TGI still picks Marlin for gptq/awq.
            argv += ["--quantize", source.quantization.lower()]
        argv += settings.engine_args.get(self.name, ())
        # TGI turns prefix caching on where the attention kernel allows; "0" turns it off.
        env = {} if settings.prefix_caching else {"PREFIX_CACHING": "0"}
        return LaunchSpec(tuple(argv), env)

    def version(self, root: str) -> str | None:
        return get_json_field(f"{root}/info", "version")
