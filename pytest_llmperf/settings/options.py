"""Every llmperf option: its spellings (flag, environment, ini), its help text and the parser
that turns its text into a value.  A parser raises ``ValueError`` saying what it expected;
:func:`pytest_llmperf.settings.resolve.resolve_settings` adds the value and where it came from.
This module imports nothing heavy: it runs when pytest loads the plugin.

Flags live beside other plugins' in one argparse parser, where a flag registered twice stops
every pytest session.  So every flag but ``--backend`` and ``--model`` starts ``--llmperf-``;
an older or shared spelling is an *alias* (:attr:`Option.aliases`), registered only when no
other plugin has that flag (plugin.shared_flags).  ``--base-url`` is pytest-base-url's too
(pytest-playwright's when it runs without it): the same meaning, so its value is read as ours
(:data:`SHARED`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pytest_llmperf.settings import parsers as parse
from pytest_llmperf.settings.ab_spec import parse_ab
from pytest_llmperf.settings.parsers import BACKENDS

__all__ = ["BACKENDS", "OPTIONS", "SHARED", "Option", "SharedFlag"]

T = TypeVar("T")


@dataclass(frozen=True)
class Option(Generic[T]):
    """One setting: its spellings in every source, its help text and its parser."""

    name: str  # field of Settings
    flag: str  # command-line flag
    help: str
    parse: Callable[[str], T]
    default: str | None
    # The settings groups (settings.groups) that hold it: matrix, server, load, search,
    # checks, store, report.
    groups: tuple[str, ...] = ()
    repeatable: bool = False  # the flag may be given several times (values joined by commas)
    # Other spellings of the flag that still work (older names, or a flag another plugin
    # shares); each is registered only when no other plugin has it, and the flag wins over it.
    aliases: tuple[str, ...] = ()

    @property
    def is_switch(self) -> bool:
        """A yes/no setting: the bare flag means yes."""
        return self.parse is parse.yes_no

    @property
    def env(self) -> str:
        return "LLMPERF_" + self.name.upper()

    @property
    def ini(self) -> str:
        return "llmperf_" + self.name

    @property
    def dest(self) -> str:
        return "llmperf_" + self.name

    @property
    def message_flag(self) -> str:
        """The spelling a message names when the one typed is not known: the long-standing
        one (the first alias where there is one), as scripts and older runs spell it."""
        return (self.aliases or (self.flag,))[0]

    def alias_dest(self, alias: str) -> str:
        """Where an alias's value is stored: a shared flag's own dest (another plugin may own
        it), else one of ours."""
        shared = SHARED.get(alias)
        return shared.dest if shared else f"{self.dest}__{alias.lstrip('-').replace('-', '_')}"


@dataclass(frozen=True)
class SharedFlag:
    """A flag other plugins register with the same meaning as ours: its value is ours when
    llmperf's own spellings give none.  Registered by another plugin, its ``dest`` defaults
    to the environment variable ``env``, and its plugin declares the ini value ``ini``;
    ``modules``: the plugins that may register it."""

    dest: str
    env: str
    ini: str
    modules: tuple[str, ...]


# pytest-base-url (and pytest-playwright when it runs without it) register --base-url, dest
# base_url, default $PYTEST_BASE_URL, and the ini value base_url.
SHARED = {"--base-url": SharedFlag("base_url", "PYTEST_BASE_URL", "base_url",
                                   ("pytest_base_url", "pytest_playwright"))}


OPTIONS: tuple[Option[Any], ...] = (
    Option("backend", "--backend",
           f"inference engine(s), comma-separated: {', '.join(BACKENDS)}",
           parse.list_of(parse.choice(*BACKENDS)), "llamacpp", groups=("matrix",)),
    Option("model", "--model",
           "model alias(es) from the catalogue, comma-separated (smollm2-135m, qwen72b-gptq, "
           "...), or an engine's own id: a .gguf file, a model directory, an org/name Hugging "
           "Face id or an Ollama name:tag", parse.list_of(parse.text), "smollm2-135m",
           groups=("matrix",)),
    Option("base_url", "--llmperf-base-url",
           "attach to a running server at this URL instead of launching one (OpenAI-"
           "compatible servers: the URL ends in /v1); no user, password or query in it: the "
           "key goes in --llmperf-api-key-env.  --base-url is the same flag, shared with "
           "pytest-base-url when it is installed; its PYTEST_BASE_URL and ini base_url are "
           "read after llmperf's own.  Several comma-separated URLs (--backend openai) are "
           "replicas of one deployment: the load is spread over them "
           "(--llmperf-replica-policy) and the report splits it per URL", parse.urls, None,
           groups=("server",), aliases=("--base-url",)),
    Option("metrics_url", "--llmperf-metrics-url",
           "a Prometheus text endpoint to capture over every measured window (repeatable: "
           "replicas, a router, a gateway; a launched engine's own /metrics is captured "
           "anyway): every metric family, counters as deltas, histograms as the window's own "
           "distribution, gauges polled for peak and mean, in the report and the result store, "
           "and for SLOs such as 'server[vllm:num_preemptions_total].delta <= 0'",
           parse.urls, None, groups=("server",), repeatable=True),
    Option("dcgm_url", "--llmperf-dcgm-url",
           "an NVIDIA DCGM exporter's Prometheus page (repeatable: one per GPU host): its "
           "GPUs are read at every telemetry sample like local GPUs, for the same GPU metrics "
           "and SLOs (utilisation, memory, power, energy), each GPU named by host and index",
           parse.urls, None, groups=("server",), repeatable=True),
    Option("replica_policy", "--llmperf-replica-policy",
           "how requests are spread over several --base-url replicas: round-robin (in turn) "
           "or least-busy (the replica with the fewest requests in flight)",
           parse.choice("round-robin", "least-busy"), "round-robin", groups=("server",)),
    Option("api_key_env", "--llmperf-api-key-env",
           "NAME of the environment variable that holds the API key (not the key itself); the "
           "key is sent only as an Authorization: Bearer header and written to no output",
           parse.env_name, None, groups=("server",), aliases=("--api-key-env",)),
    Option("thresholds", "--llmperf-thresholds",
           "SLO file (default: thresholds.toml in rootdir)", parse.path, None,
           groups=("checks",), aliases=("--thresholds",)),
    Option("report", "--llmperf-report", "write the markdown report to this path",
           parse.path, None, groups=("report",)),
    Option("html", "--llmperf-html",
           "write the report as one self-contained HTML file (charts embedded, printable) to "
           "this path", parse.path, None, groups=("report",)),
    Option("json", "--llmperf-json",
           "also write the run's result document (JSON) to this path (it is always written to "
           "the output directory as results.json)", parse.path, None, groups=("store",)),
    Option("save", "--llmperf-save",
           "keep this run in the storage directory under NAME (a new numbered file: nothing "
           "saved before is replaced)", parse.run_name, None, groups=("store",)),
    Option("autosave", "--llmperf-autosave",
           "yes: keep every run in the storage directory (named by its git commit)", parse.yes_no,
           "no", groups=("store",)),
    Option("storage", "--llmperf-storage",
           "directory of saved runs (default: .llmperf in rootdir); list it with "
           "`python -m pytest_llmperf list`", parse.path, None, groups=("store",)),
    Option("compare", "--llmperf-compare",
           "compare every test with this saved run (NAME, latest, or a result document's path "
           "ending in .json): a table of changes with confidence intervals", parse.baseline, None,
           groups=("store",)),
    Option("compare_runs", "--llmperf-compare-runs",
           "pool the newest N runs saved under the --llmperf-compare name as the baseline: "
           "their spread is the run-to-run variation the comparison allows for",
           parse.int_at_least(1), "1", groups=("store",)),
    Option("compare_fail", "--llmperf-compare-fail",
           "fail a test when a metric got worse than the baseline by more than a tolerance "
           "with 95 %% confidence: tpot_ms.p95:10%% or ttft_ms.p95:50ms; comma-separated or "
           "repeated", parse.gates, None, repeatable=True, groups=("store",)),
    Option("compare_any_hardware", "--llmperf-compare-any-hardware",
           "yes: compare with a baseline taken on other hardware (every row is labelled); by "
           "default such a baseline is refused", parse.yes_no, "no", groups=("store",)),
    Option("ab", "--llmperf-ab",
           "two builds held against each other in one session (llmperf_ab): 'before: "
           "url=URL; after: url=URL', keys url, python, gpus, backend, model, args "
           "(docs/baselines.md)", parse_ab, None, groups=("store",)),
    Option("ab_mode", "--llmperf-ab-mode",
           "interleave: both sides up at once, windows in rounds A B, B A, ...; bracket: one "
           "side at a time, A B A ... A, a drift of A makes the verdicts inconclusive",
           parse.choice("interleave", "bracket"), "interleave", groups=("store",)),
    Option("ab_rounds", "--llmperf-ab-rounds",
           "windows of each side in an A/B comparison (interleave: an even number cancels a "
           "linear drift)", parse.int_at_least(2), "4", groups=("store",)),
    Option("inconclusive", "--llmperf-inconclusive",
           "what a percentile SLO whose sample is too small to support it does: fail, warn "
           "(pass, shown as inconclusive) or pass", parse.choice("fail", "warn", "pass"), "warn",
           groups=("checks",)),
    Option("repeats", "--llmperf-repeats",
           "measured windows per load (each its own window, held to the SLOs and compared "
           "together): shows the run-to-run variance", parse.int_at_least(1), "1",
           groups=("load",)),
    Option("requests", "--llmperf-requests",
           "measured requests per window, fixing its size; not given, a window takes as many "
           "as its SLOs need to be decided, from 64 up to 256",
           parse.int_at_least(1), "64", groups=("load",)),
    Option("duration", "--llmperf-duration",
           "seconds each measured window lasts, instead of --llmperf-requests (no request "
           "starts after it; those in flight finish)", parse.seconds, None, groups=("load",)),
    Option("request_timeout", "--llmperf-request-timeout",
           "seconds a request may take to its last token; it then fails as a timeout (counted "
           "in the error rate, never dropped)", parse.seconds, "600", groups=("load",)),
    Option("ttft_timeout", "--llmperf-ttft-timeout",
           "seconds a request may wait for its first token; it then fails as a timeout "
           "(default: only --llmperf-request-timeout applies)", parse.seconds, None,
           groups=("load",)),
    Option("window_timeout", "--llmperf-window-timeout",
           "seconds a load may run, warm-up included: requests still in flight are then cut "
           "and fail as timeouts, and none is sent after it (a hung server cannot hang the "
           "session)", parse.seconds, "1800", groups=("load",)),
    Option("strict_validity", "--llmperf-strict-validity",
           "yes: a window marked client-bound (the load generator could not keep up) or "
           "disturbed (other work on the machine) fails its test; by default it is marked",
           parse.yes_no, "no", groups=("checks",)),
    Option("client_processes", "--llmperf-client-processes",
           "processes the load is offered from, with one shared schedule and their records "
           "merged: for a server that takes more streams than one client event loop reads in "
           "time (a window marked client-bound)", parse.int_at_least(1), "1", groups=("load",)),
    Option("event_loop", "--llmperf-event-loop",
           "the client's event loop: asyncio, or uvloop (pip install uvloop; reads more "
           "streams per core, see docs/trust.md)",
           parse.choice("asyncio", "uvloop"), "asyncio", groups=("load",)),
    Option("users", "--llmperf-users",
           "concurrent users of the closed-loop tests, comma-separated: each a test of its own "
           "(test_concurrent_users, and the points of test_sweep)",
           parse.list_of(parse.int_at_least(1)), "4", groups=("load",)),
    Option("rate", "--llmperf-rate",
           "request rates (req/s) of the open-loop tests, comma-separated; inf sends every "
           "request at once", parse.list_of(parse.rate), "0.5", groups=("load",)),
    Option("arrivals", "--llmperf-arrivals",
           "open-loop arrivals: constant (evenly spaced), poisson, or gamma (with "
           "--llmperf-burstiness; the default when a burstiness other than 1 is given)",
           parse.choice("constant", "poisson", "gamma"), None, groups=("load",)),
    Option("burstiness", "--llmperf-burstiness",
           "gamma arrivals' shape: 1 is Poisson, below 1 burstier, above 1 more even (as "
           "vLLM's --burstiness)", parse.positive_number, "1", groups=("load",)),
    Option("max_concurrency", "--llmperf-max-concurrency",
           "open loop: most requests in flight; later arrivals wait in the client (measured as "
           "schedule_slip_ms)", parse.int_at_least(1), None, groups=("load",)),
    Option("ramp", "--llmperf-ramp",
           "closed loop: seconds over which the users join, one by one (0: all at once)",
           parse.seconds_or_zero, "0", groups=("load",)),
    Option("capacity_budget", "--llmperf-capacity-budget",
           "seconds a capacity search may spend on its probes, settling its capacity "
           "included (it stops before a probe that would overrun, and says what it could not "
           "finish); enough by default for a users search on 2 CPU cores",
           parse.seconds, "150", groups=("search",)),
    Option("probe_requests", "--llmperf-probe-requests",
           "measured requests per capacity probe (a closed loop sends at least 2 per user; "
           "an open loop at least 8 and at most 20 s of arrivals)", parse.int_at_least(4),
           "12", groups=("search",)),
    Option("capacity_max_users", "--llmperf-capacity-max-users",
           "highest concurrency a capacity search probes", parse.int_at_least(1), "1024",
           groups=("search",)),
    Option("capacity_max_rate", "--llmperf-capacity-max-rate",
           "highest request rate (req/s) a capacity search probes", parse.positive_number,
           "1000", groups=("search",)),
    Option("warmup", "--llmperf-warmup",
           "warm-up requests before each measured window (not measured)",
           parse.int_at_least(0), "4", groups=("load",)),
    Option("dataset", "--llmperf-dataset",
           "prompts to send: builtin, random:input=512,output=128 (exact lengths in the model's "
           "tokens; LOW..HIGH uniform, MEAN~SD normal), sharegpt:PATH[,multi-turn], "
           "jsonl:PATH, shared-prefix:documents=4,questions=4,document=1024, trace:PATH "
           "(a request trace: JSONL, Mooncake, BurstGPT or Azure CSV; docs/datasets.md)",
           parse.text, None, groups=("load",)),
    Option("trace_speed", "--llmperf-trace-speed",
           "replay a trace this many times faster (0.5: twice as slow)",
           parse.positive_number, "1", groups=("load",)),
    Option("trace_window", "--llmperf-trace-window",
           "replay only START:END seconds of the trace (60:180, 60: or :120)",
           parse.time_slice, None, groups=("load",)),
    Option("endpoint", "--llmperf-endpoint",
           "what every window drives: chat (/v1/chat/completions), completions "
           "(/v1/completions, the conversation as one text), embeddings (/v1/embeddings; a "
           "launched llama.cpp then serves with --embeddings) or rerank (/v1/rerank, on a "
           "server the session attaches to: one query and --llmperf-rerank-documents "
           "documents a request)",
           parse.choice("chat", "completions", "embeddings", "rerank"), "chat",
           groups=("load", "server")),
    Option("embedding_batch", "--llmperf-embedding-batch",
           "inputs per embeddings request (the endpoint's batch)", parse.int_at_least(1), "1",
           groups=("load",)),
    Option("images", "--llmperf-images",
           "images in chat: each request carries one generated image, of these sizes in turn "
           "(WIDTHxHEIGHT, comma-separated, e.g. 512x512,1024x1024), as an OpenAI image_url "
           "part; the report splits TTFT and the server's prompt tokens per size",
           parse.image_sizes, None, groups=("load",)),
    Option("rerank_documents", "--llmperf-rerank-documents",
           "documents scored against each query of a rerank request", parse.int_at_least(1),
           "8", groups=("load",)),
    Option("rate_stages", "--llmperf-rate-stages",
           "staged open-loop rates for test_rate_stages, one schedule with a window per "
           "stage: RATE:SECONDS, FROM..TO:SECONDS for a linear ramp (1:60,1..4:30,4:120)",
           parse.rate_stages, None, groups=("load",)),
    Option("seed", "--llmperf-seed",
           "seed of the prompt order, for reproducible content (each run still gets a fresh "
           "salt at the start of every prompt, so no server cache can answer it)",
           parse.int_at_least(0), "0", groups=("load",)),
    Option("max_tokens", "--llmperf-max-tokens", "output tokens asked for per request",
           parse.int_at_least(2), "64", groups=("load", "server")),
    Option("ignore_eos", "--llmperf-ignore-eos",
           "yes: ask the server to generate exactly max-tokens (ignore_eos/min_tokens) so a "
           "short answer cannot flatter tokens/s", parse.yes_no, "yes", groups=("server",)),
    Option("output_dir", "--llmperf-output-dir",
           "directory for server logs (default: llmperf-output in rootdir)", parse.path, None,
           groups=("server", "report")),
    Option("gpus", "--llmperf-gpus",
           "GPU indices a launched engine may use (sets CUDA_VISIBLE_DEVICES), e.g. 0,1; under "
           "pytest-xdist one set per worker: 0,1|2,3", parse.gpu_sets, None, groups=("server",),
           aliases=("--gpus",)),
    Option("tp", "--llmperf-tp",
           "tensor-parallel size (default: the catalogue's tp, at most the GPUs given)",
           parse.int_at_least(1), None, groups=("server",)),
    Option("max_model_len", "--llmperf-max-model-len",
           "context length a launched engine reserves KV cache for",
           parse.int_at_least(256), "4096", groups=("server",)),
    Option("max_num_seqs", "--llmperf-max-num-seqs",
           "most requests an engine runs at once (the suite's largest user count fits)",
           parse.int_at_least(1), "8", groups=("server",)),
    Option("gpu_memory_utilization", "--llmperf-gpu-memory-utilization",
           "share of each GPU's memory vLLM/SGLang/LMDeploy may take", parse.fraction, "0.9",
           groups=("server",)),
    Option("prefix_caching", "--llmperf-prefix-caching",
           "yes: let the engine reuse cached prompt prefixes (off by default: it flatters TTFT)",
           parse.yes_no, "no", groups=("server",)),
    Option("chunked_prefill", "--llmperf-chunked-prefill",
           "yes/no: force vLLM chunked prefill on or off (default: the engine's own choice)",
           parse.yes_no, None, groups=("server",)),
    Option("engine_args", "--llmperf-engine-args",
           "extra launch arguments per engine: 'vllm: --swap-space 4; sglang: --foo 1'",
           parse.engine_args, None, groups=("server",)),
    Option("llamacpp_bin", "--llmperf-llamacpp-bin",
           "run this llama-server binary instead of the embedded xllamacpp engine",
           parse.path, None, groups=("server",), aliases=("--llamacpp-bin",)),
    Option("engine_python", "--llmperf-engine-python",
           "Python that runs Python engines (vLLM, SGLang, LMDeploy, Xinference): PATH for all, or "
           "'vllm: PATH; sglang: PATH' (default: this interpreter)", parse.per_backend_path, None,
           groups=("server",)),
    Option("ngl", "--llmperf-ngl",
           "llama.cpp layers offloaded to the GPU (default: all when --llmperf-gpus is given, "
           "else 0)",
           parse.int_at_least(0), None, groups=("server",)),
    Option("telemetry_interval", "--llmperf-telemetry-interval",
           "seconds between GPU/CPU telemetry samples during a measured window",
           parse.seconds, "0.5", groups=("load",)),
    Option("require_gpu", "--llmperf-require-gpu",
           "yes: SLOs on GPU metrics fail when no NVIDIA GPU can be read (default: skipped)",
           parse.yes_no, "no", groups=("checks",)),
    Option("ready_timeout", "--llmperf-ready-timeout",
           "seconds a launched engine may take to become ready (loading a 72B model takes "
           "minutes)", parse.int_at_least(1), "900", groups=("server",)),
)
