"""Hugging Face ``transformers``, in process: no server, ``generate`` behind a batching worker.

The model is loaded into the pytest process (a GGUF source is dequantized on load; otherwise
the ``hf`` id or directory), on CUDA when torch has it, else on the CPU, and served by
:class:`~pytest_llmperf.engines.transformers_engine.TransformersEngine` (static batching, see
there), whose requests come from :class:`~pytest_llmperf.clients.inprocess.InProcessClient`
(``ServedModel.open_client``).  Several GPUs split the model's layers (``device_map="auto"``):
that is pipeline placement, not tensor parallelism.  torch and transformers are imported only
in ``serve``.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.engines.catalog import ModelEntry, ModelSource
from pytest_llmperf.settings.groups import ServerSettings

__all__ = ["TransformersBackend"]

INSTALL_HINT = "pip install 'pytest-llmperf[transformers]'"


class TransformersBackend:
    name = "transformers"
    source_kinds = ("gguf", "hf")  # preferred first: the GGUF needs no hub download

    def check(self, settings: ServerSettings, model: ModelEntry) -> None:
        if settings.base_url:
            raise ValueError(f"{settings.sources.get('base_url', '--base-url')}: backend "
                             "transformers runs the model inside pytest and cannot attach to a "
                             "server; use --backend openai for that")
        source = model.source(self.source_kinds)
        modules = ["torch", "transformers"]
        if source is not None and source.kind == "gguf":
            modules += ["gguf", "accelerate"]
        missing = [name for name in modules if importlib.util.find_spec(name) is None]
        if missing:
            raise ValueError(f"backend transformers: {', '.join(missing)} not installed; "
                             f"install with `{INSTALL_HINT}`")
        if source is not None and source.kind == "gguf" and source.embedded is None \
                and not Path(source.id).expanduser().is_file():
            raise ValueError(f"{settings.sources.get('model', '--model')}: GGUF file "
                             f"{source.id} of model {model.alias!r} does not exist")

    def unsupported(self, settings: ServerSettings, model: ModelEntry) -> str | None:
        if model.source(self.source_kinds) is not None:
            return None
        return (f"{model.alias} has no gguf or hf source, which transformers loads "
                f"(catalogue entry: {model.origin})")

    @contextlib.contextmanager
    def serve(
        self, settings: ServerSettings, model: ModelEntry, workdir: Path
    ) -> Iterator[ServedModel]:
        source = model.source(self.source_kinds)
        if source is None:
            raise ValueError(self.unsupported(settings, model))
        import torch
        import transformers

        from pytest_llmperf.engines.transformers_engine import TransformersEngine

        gpus = _gpus(settings, model, torch)
        load: dict[str, Any] = {"dtype": torch.bfloat16 if gpus else torch.float32}
        if len(gpus) == 1:
            load["device_map"] = {"": gpus[0]}
        elif gpus:
            # Only the chosen GPUs, and no more of each than the other engines may take.
            load["device_map"] = "auto"
            load["max_memory"] = {
                gpu: int(torch.cuda.get_device_properties(gpu).total_memory
                         * settings.gpu_memory_utilization) for gpu in gpus}
        if gpus:
            from pytest_llmperf.engines.fit import check_fit

            check_fit(settings, self.name, model, source, tp=len(gpus), gpus=gpus)
        where, files, digest, model_file = _locate(source)
        loading = time.monotonic()  # its startup: the model loaded and the engine started
        tokenizer = transformers.AutoTokenizer.from_pretrained(where, **files)
        lm = transformers.AutoModelForCausalLM.from_pretrained(where, **files, **load)
        engine = TransformersEngine(lm, tokenizer, max_num_seqs=settings.max_num_seqs,
                                    ignore_eos=settings.ignore_eos)
        del lm  # the engine holds the only reference, dropped by close()
        device = "cpu" if not gpus else ",".join(f"cuda:{gpu}" for gpu in gpus)
        if len(gpus) > 1:
            device += " layer split"
        if not gpus:
            # torch's default, every core: fastest on a quiet machine (1.6x one thread fewer
            # on 2 cores), but its spinning OpenMP threads collapse when other work shares them.
            threads = torch.get_num_threads()
            device += f", {threads} thread{'s' if threads != 1 else ''}"
        engine.start()
        startup_s = time.monotonic() - loading
        try:
            yield ServedModel(
                backend=self.name,
                model=model.alias,
                endpoint=None,
                engine=f"transformers {transformers.__version__} "
                       f"(torch {torch.__version__}, {device})",
                model_file=model_file,
                model_sha256=digest,
                server_pid=None,
                open_client=engine.client,
                forces_length=settings.ignore_eos,
                tokenizer=HFTokenizer(tokenizer),
                context_tokens=model.context or _positions(engine.model),
                reasoning=model.reasoning,
                startup_s=startup_s,
            )
        finally:
            engine.close()
            gc.collect()
            if gpus:
                torch.cuda.empty_cache()  # the next target gets this one's GPU memory


class HFTokenizer:
    """A Hugging Face tokenizer as the ids a prompt source of exact lengths needs."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tokenizer.decode(list(ids)))


def _positions(model: Any) -> int | None:
    """The model's own context length from its config, when it says."""
    value = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


def _gpus(settings: ServerSettings, model: ModelEntry, torch: Any) -> tuple[int, ...]:
    """The CUDA devices to load on; () for the CPU."""
    chosen = settings.gpu_ids()
    if not torch.cuda.is_available():
        if chosen:
            raise ValueError(f"{settings.sources.get('gpus', '--gpus')}: torch "
                             f"{torch.__version__} sees no CUDA device; install a CUDA build "
                             "of torch or leave out --gpus")
        return ()
    count = torch.cuda.device_count()
    if chosen is None:
        chosen = tuple(range(count))
    elif any(gpu >= count for gpu in chosen):
        raise ValueError(f"{settings.sources.get('gpus', '--gpus')}: GPU "
                         f"{max(chosen)} requested but torch sees {count} CUDA device(s)")
    size = max(1, min(settings.tp or model.tp, len(chosen)))
    return tuple(chosen[:size])


def _locate(source: ModelSource) -> tuple[str, dict[str, str], str | None, str]:
    """What ``from_pretrained`` gets: directory or id, GGUF file name, sha256, model file."""
    if source.kind == "gguf":
        from pytest_llmperf.engines.llamacpp import resolve_gguf

        path, digest = resolve_gguf(source)
        return str(path.parent), {"gguf_file": path.name}, digest, str(path)
    return source.id, {}, None, source.id
