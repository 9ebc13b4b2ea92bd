"""What every engine launched as a server process shares: check, launch or attach, serve.

An engine module subclasses :class:`LaunchedBackend` and says, as data and small methods, how
its server is started (:meth:`LaunchedBackend.launch` returns a :class:`LaunchSpec`), what it
must have installed, which log lines mean "out of GPU memory", where its Prometheus metrics are
and how its version is read.  Everything else (free port, ``CUDA_VISIBLE_DEVICES``, the memory
fit pre-check, readiness, logs, teardown, ``--base-url`` attach) happens here once.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.engines.catalog import ModelEntry, ModelSource
from pytest_llmperf.engines.lifecycle import ManagedServer, free_port
from pytest_llmperf.observe.server_metrics import ServerMetricNames
from pytest_llmperf.settings.groups import ServerSettings
from pytest_llmperf.settings.parsers import api_key_problem, redact_url
from pytest_llmperf.settings.parsers import url as parse_url

__all__ = ["AUTO_DETECTED_QUANTIZATION", "LaunchSpec", "LaunchedBackend", "attach_url",
           "auth_headers", "checked_key", "get_json_field", "python_module_missing"]

# Checkpoint formats vLLM and SGLang read from the model's config.json and then run with their
# fastest kernel (Marlin).  Naming them explicitly ("--quantization gptq") *forces* the slow
# kernel ("Detected that the model can run with gptq_marlin, however you specified
# quantization=gptq explicitly, so forcing gptq"), so they are left to the engine.
AUTO_DETECTED_QUANTIZATION = frozenset({"gptq", "awq"})


@dataclass(frozen=True)
class LaunchSpec:
    """How to start one server: the command line and the environment it adds."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


class LaunchedBackend:
    """Base of engines that run as their own server process.  Subclasses set the class
    attributes and implement :meth:`launch` and :meth:`missing`."""

    name: str = ""
    source_kinds: tuple[str, ...] = ("hf",)  # which catalogue sources it loads, preferred first
    install_hint: str = ""  # e.g. "pip install vllm"
    oom_patterns: tuple[str, ...] = ()  # log text that means out of (GPU) memory
    health_path: str = "/health"
    api_path: str = "/v1"  # OpenAI-compatible API root; "" when the engine has none
    metrics_path: str | None = "/metrics"
    metric_names: ServerMetricNames | None = None
    uses_gpus: bool = True  # False: no GPU-memory fit pre-check (CPU engines)
    # With --llmperf-ignore-eos, requests carry ignore_eos and this field = their max_tokens, so
    # that exactly max_tokens are generated; None: the engine has no such field (TGI).
    min_tokens_field: str | None = "min_tokens"

    # -- what subclasses provide ---------------------------------------------------------

    def launch(
        self, settings: ServerSettings, model: ModelEntry, source: ModelSource, port: int, tp: int
    ) -> LaunchSpec:
        raise NotImplementedError

    def missing(self, settings: ServerSettings) -> str | None:
        """Why the engine cannot be launched here (one line naming what to install), or None."""
        raise NotImplementedError

    def version(self, root: str) -> str | None:
        """The engine's version as the running server reports it; None if it does not say."""
        return None

    def endpoint(self, settings: ServerSettings, base_url: str, model_id: str) -> Endpoint:
        forced = settings.ignore_eos and self.min_tokens_field is not None
        return Endpoint(base_url=base_url, model=model_id, api_key=checked_key(settings),
                        ignore_eos=forced, min_tokens_field=self.min_tokens_field)

    def served(
        self, settings: ServerSettings, model: ModelEntry, source: ModelSource, root: str,
        server: ManagedServer | None,
    ) -> ServedModel:
        """The :class:`ServedModel` for a ready server at ``root`` (launched or attached)."""
        version = self.version(root)
        engine = f"{self.name} {version}" if version else self.name
        if server is None:
            engine += f" at {root}"
        endpoint = self.endpoint(settings, f"{root}{self.api_path}", self.model_id(source))
        return ServedModel(
            backend=self.name,
            model=model.alias,
            endpoint=endpoint,
            forces_length=endpoint.ignore_eos,
            engine=engine,
            model_file=source.id,
            server_pid=server.pid if server else None,
            log_path=server.log_path if server else None,
            metrics_url=f"{root}{self.metrics_path}" if self.metrics_path else None,
            metric_names=self.metric_names,
            check_alive=server.check_running if server else None,
            restart=server.restart if server else None,
            context_tokens=model.context,
            reasoning=model.reasoning,
            # How it was served, for a comparison of configurations (an attached server's
            # own settings are not ours to know).
            tensor_parallel=self.tp_size(settings, model) if server else None,
            quantization=source.quantization,
            engine_args=tuple(settings.engine_args.get(self.name, ())) if server else (),
            startup_s=server.ready_s if server else None,
        )

    def local_source(self, source: ModelSource) -> ModelSource:
        """The source made local before launch (an embedded model fetched into the cache)."""
        return source

    def model_id(self, source: ModelSource) -> str:
        """The name requests carry in their ``model`` field."""
        return source.id

    # -- shared ------------------------------------------------------------------------

    def check(self, settings: ServerSettings, model: ModelEntry) -> None:
        if settings.base_url:
            return  # attaching: nothing of ours needs installing
        reason = self.missing(settings)
        if reason:
            raise ValueError(f"backend {self.name}: {reason}")

    def unsupported(self, settings: ServerSettings, model: ModelEntry) -> str | None:
        if model.source(self.source_kinds) is not None:
            return None
        kinds = " or ".join(self.source_kinds)
        return (f"{model.alias} has no {kinds} source, which {self.name} loads "
                f"(catalogue entry: {model.origin})")

    def tp_size(self, settings: ServerSettings, model: ModelEntry) -> int:
        """--llmperf-tp, else the catalogue's tp capped at the GPUs given (the fit check then
        says whether the model fits on fewer GPUs)."""
        if settings.tp:
            return settings.tp
        gpus = settings.gpu_ids()
        return min(model.tp, len(gpus)) if gpus else model.tp

    @contextlib.contextmanager
    def serve(self, settings: ServerSettings, model: ModelEntry,
              workdir: Path) -> Iterator[ServedModel]:
        source = model.source(self.source_kinds)
        if source is None:
            raise ValueError(self.unsupported(settings, model))
        if settings.base_url:
            base_url = attach_url(settings)
            root = base_url.removesuffix(self.api_path) if self.api_path else base_url
            _check_reachable(f"{root}{self.health_path}", settings)
            yield self.served(settings, model, source, root, None)
            return
        from pytest_llmperf.engines.fit import check_fit

        tp = self.tp_size(settings, model)
        gpus = settings.gpu_ids()
        if self.uses_gpus:
            check_fit(settings, self.name, model, source, tp=tp, gpus=gpus)
        local = self.local_source(source)

        def command(port: int) -> tuple[tuple[str, ...], dict[str, str]]:
            """The command and environment that serve on ``port`` (another one, should the
            first be taken before the engine binds it)."""
            spec = self.launch(settings, model, local, port, tp)
            env = dict(os.environ)
            if gpus is not None:
                # NVML (the fit check, telemetry) numbers GPUs in PCI bus order; make CUDA agree.
                env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
                env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpus)
            env.update(spec.env)
            return spec.argv, env

        port = free_port()
        argv, env = command(port)
        log_path = workdir / f"{self.name}-{model.name.replace('/', '_')}-{port}.log"
        with ManagedServer(self.name, argv, health_url=f"http://127.0.0.1:{port}{self.health_path}",
                           log_path=log_path, env=env,
                           ready_timeout_s=float(settings.ready_timeout),
                           oom_patterns=self.oom_patterns, relaunch=command) as server:
            root = f"http://127.0.0.1:{server.port}"  # where it serves: it may have moved
            yield self.served(settings, model, local, root, server)


def python_module_missing(python: str, module: str, install_hint: str) -> str | None:
    """None when ``python`` can import ``module``; else one line saying what to install."""
    if python == sys.executable:
        found = importlib.util.find_spec(module) is not None
    elif not (Path(python).is_file() or shutil.which(python)):
        return f"Python interpreter {python} not found (--llmperf-engine-python)"
    else:
        probe = ("import importlib.util, sys; "
                 f"sys.exit(importlib.util.find_spec({module!r}) is None)")
        completed = subprocess.run([python, "-c", probe], capture_output=True, timeout=60)
        found = completed.returncode == 0
    if found:
        return None
    return (f"Python module {module!r} is not installed for {python}; install it with "
            f"`{install_hint}` or name the interpreter that has it with --llmperf-engine-python")


def attach_url(settings: ServerSettings) -> str:
    """--base-url checked again, as settings may be built past the option parser: readiness
    would send a URL's credentials (requests makes Basic auth of them) and the streaming client
    would not, and every message and report would copy them."""
    assert settings.base_url is not None
    if len(settings.base_urls) > 1:
        raise ValueError(f"{settings.sources.get('base_url', '--base-url')}: several URLs "
                         "(replicas) are attached to with --backend openai only")
    try:
        return parse_url(settings.base_url)
    except ValueError as exc:
        source = settings.sources.get("base_url", "--base-url")
        raise ValueError(f"{source}: invalid value {redact_url(settings.base_url)!r}: {exc}"
                         ) from None


def checked_key(settings: ServerSettings) -> str | None:
    """The API key, checked again as it is read now (its variable may have changed since the
    settings were resolved): a line break or a character outside Latin-1 would fail every
    request, and make requests raise with the header's value in its message."""
    key = settings.api_key()
    problem = api_key_problem(key) if key else None
    if problem:
        source = settings.sources.get("api_key_env", "--api-key-env")
        raise ValueError(f"{source}: the API key in environment variable "
                         f"{settings.api_key_env} {problem} (the key is not shown)")
    return key


def auth_headers(settings: ServerSettings) -> dict[str, str]:
    """The Authorization header of the (checked) key; none without one."""
    key = checked_key(settings)
    return {"Authorization": f"Bearer {key}"} if key else {}


def _check_reachable(url: str, settings: ServerSettings) -> None:
    try:
        response = requests.get(url, headers=auth_headers(settings), timeout=10)
    except requests.RequestException as exc:
        raise ConnectionError(f"cannot reach the server given by {settings.sources['base_url']}:"
                              f" GET {url} failed: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise ConnectionError(f"GET {url} answered HTTP {response.status_code}; check --base-url")


def get_json_field(url: str, key: str) -> str | None:
    """``key`` of the JSON object at ``url`` as text; None when unreachable or absent."""
    try:
        response = requests.get(url, timeout=10)
        value = response.json().get(key) if response.status_code == 200 else None
    except (requests.RequestException, ValueError, AttributeError):
        return None
    return str(value) if value not in (None, "") else None
