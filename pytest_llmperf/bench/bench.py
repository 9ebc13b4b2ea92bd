"""The library under the pytest layer: a served model and everything needed to measure it.

A :class:`Bench` runs measured windows, sweeps, capacity searches, prefill sweeps and the
prefix-cache check against one served model, keeps its launched server alive (started again
once if it dies, :mod:`pytest_llmperf.engines.supervise`) and holds results to SLOs.  It needs
no pytest: :func:`pytest_llmperf.bench.serve.serve` opens one from settings, and the fixtures
are adapters that record what it returns.  ``on_window`` is told every measured window (not a
capacity probe's), ``on_restart`` why the server was started again, ``progress`` how a long
window or a search is getting on.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pytest_llmperf.engines.supervise import Supervisor
from pytest_llmperf.results.capacity import CapacityResult, ProbeOutcome
from pytest_llmperf.results.judge import judge_window, window_problems
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.prefix_cache import PrefixCacheResult
from pytest_llmperf.results.replicas import slow_replicas
from pytest_llmperf.results.slo import Verdict
from pytest_llmperf.results.sweep import SweepResult
from pytest_llmperf.results.thresholds import Check
from pytest_llmperf.results.window import WindowResult
from pytest_llmperf.settings.groups import (
    CheckSettings,
    LoadSettings,
    SearchSettings,
    Settings,
    TimeLimits,
)

if TYPE_CHECKING:
    from pytest_llmperf.clients.base import Tokenizer
    from pytest_llmperf.engines.base import ServedModel
    from pytest_llmperf.load.closed_loop import StopRule
    from pytest_llmperf.observe.telemetry import Telemetry
    from pytest_llmperf.prompts.builtin import PromptSource
    from pytest_llmperf.prompts.trace_files import Trace
    from pytest_llmperf.results.rate_stages import RateStage
    from pytest_llmperf.results.records import RequestRecord

__all__ = ["Bench", "Unsupported", "WindowRunner"]


class Unsupported(RuntimeError):
    """What was asked cannot be measured on this served model (no tokenizer, no prefix cache,
    no prompt length that fits); the message says why.  The fixtures skip the test."""


class WindowRunner(Protocol):
    """:func:`pytest_llmperf.load.runner.run_load`'s signature, as the bench calls it."""

    def __call__(self, served: ServedModel, prompts: PromptSource, *, shape: LoadShape,
                 requests: int | None, duration_s: float | None, warmup: int, max_tokens: int,
                 limits: TimeLimits, telemetry: Telemetry | None, stop: StopRule | None,
                 progress: Callable[[str], None] | None, progress_label: str,
                 client_processes: int, event_loop: str) -> WindowResult: ...


def _run_load(served: ServedModel, prompts: PromptSource, **kwargs: object) -> WindowResult:
    from pytest_llmperf.load.runner import run_load  # the client stack, only when measuring

    return run_load(served, prompts, **kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Bench:
    supervisor: Supervisor
    prompts: PromptSource
    telemetry: Telemetry | None
    load: LoadSettings
    search: SearchSettings
    checks: CheckSettings
    progress: Callable[[str], None] | None = None
    on_window: Callable[[WindowResult, int | None], None] | None = None  # (window, repeat)
    on_restart: Callable[[str], None] | None = None  # why the server was started again
    runner: WindowRunner = _run_load

    def observed(self, *, progress: Callable[[str], None] | None = None,
                 on_window: Callable[[WindowResult, int | None], None] | None = None,
                 on_restart: Callable[[str], None] | None = None,
                 settings: Settings | None = None) -> Bench:
        """This bench, telling these instead and, given ``settings``, with their load, search
        and check settings (one per test, over a session's server)."""
        bench = dataclasses.replace(self, progress=progress or self.progress,
                                    on_window=on_window, on_restart=on_restart)
        if settings is None:
            return bench
        return dataclasses.replace(bench, load=settings.load, search=settings.search,
                                   checks=settings.checks)

    @property
    def served(self) -> ServedModel:
        return self.supervisor.current

    def live(self) -> ServedModel:
        """The served model, started again if it died since (ServerLost when it cannot be)."""
        before = len(self.supervisor.restarts)
        served = self.supervisor.live()
        if len(self.supervisor.restarts) > before:
            died = self.supervisor.restarts[-1]
            self._say(f"{served.description}: the server died in an earlier test ({died}); "
                      f"started it again, once (pid {served.server_pid})")
            if self.on_restart is not None:
                self.on_restart(died)
        return served

    def _say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)

    # --- one load ------------------------------------------------------------------------

    def window(self, *, users: int | None = None, rate: float | None = None,
               shape: LoadShape | None = None, requests: int | None = None,
               duration_s: float | None = None, warmup: int | None = None,
               max_tokens: int | None = None, prompts: PromptSource | None = None,
               label: str = "", checks: Sequence[Check] = ()) -> WindowResult:
        """A measured window of one load (``users``, ``rate`` or ``shape``; one user when none
        is given) after ``warmup`` requests; with ``--llmperf-repeats K`` K windows back to
        back, the first with the others as ``repeats``.  ServerDied when the server died;
        ``label`` starts its progress lines.  Sized by nobody (no ``requests``/``duration_s``
        here, no --llmperf-requests/--llmperf-duration), a window takes as many requests as
        ``checks`` (the SLOs it will be held to) need: results.sequential."""
        shape = self.load.shape(users=users, rate=rate, shape=shape)
        plan = None
        if self.load.sized_by_slo and requests is None and duration_s is None and checks:
            from pytest_llmperf.results.sequential import CAP, SequentialPlan

            plan = SequentialPlan.for_checks(checks, first=self.load.requests,
                                             cap=max(CAP, self.load.requests))
        requests, duration_s = self.load.window_size(requests, duration_s)
        if plan is not None:
            requests = plan.looks[-1]
        served = self.live()
        repeats = self.load.repeats
        windows = []
        for repeat in range(1, repeats + 1):
            # The warm-up runs once, before the first window: the server is warm for the rest.
            rule = None
            if plan is not None:
                from pytest_llmperf.results.sequential import SequentialRule

                rule = SequentialRule(plan, tuple(checks))
            window = self._measure(served, shape, requests=requests, duration_s=duration_s,
                                   warmup=(self.load.warmup if warmup is None else warmup)
                                   if repeat == 1 else 0, max_tokens=max_tokens,
                                   prompts=prompts,
                                   label=f"{label} {shape.label}" if label else shape.label,
                                   stop=rule)
            if rule is not None:
                sizing = rule.sizing(window.run.records)
                window = dataclasses.replace(window, sizing=sizing)
                self._say(f"{label or shape.label}: {sizing.describe(window.requests)}")
            if self.on_window is not None:
                self.on_window(window, repeat if repeats > 1 else None)
            windows.append(window)
        return dataclasses.replace(windows[0], repeats=tuple(windows[1:]))

    def _measure(self, served: ServedModel, shape: LoadShape, *, requests: int | None,
                 duration_s: float | None, warmup: int, max_tokens: int | None,
                 prompts: PromptSource | None, label: str,
                 stop: StopRule | None = None) -> WindowResult:
        from pytest_llmperf.prompts.for_endpoint import prompts_for

        api = served.endpoint.api if served.endpoint is not None else None
        prompts = prompts_for(prompts or self.prompts, api, self.load)
        if served.open_client is not None:  # Ollama's or an in-process engine's own client
            from pytest_llmperf.prompts.tool_calls import openai_only

            if (what := openai_only(prompts)) is not None:
                raise Unsupported(f"{served.description}: {what}, which this engine's own "
                                  "client does not send")
        window = self.runner(
            served, prompts, shape=shape, requests=requests,
            duration_s=duration_s, warmup=warmup, max_tokens=max_tokens or self.load.max_tokens,
            limits=self.load.limits, telemetry=self.telemetry, stop=stop,
            progress=self.progress, progress_label=label,
            client_processes=self.load.client_processes, event_loop=self.load.event_loop)
        self.supervisor.check_window(window)  # ServerDied, with the window, if it died
        for flag in slow_replicas(window.replicas):
            self._say(f"{label}: {flag}")
        return window

    # --- judging -------------------------------------------------------------------------

    def judge(self, window: WindowResult, checks: Sequence[Check]) -> tuple[Verdict, ...]:
        """``window``'s verdicts under this bench's --llmperf-require-gpu and
        --llmperf-inconclusive."""
        return judge_window(window, checks, require_gpu=self.checks.require_gpu,
                            inconclusive=self.checks.inconclusive)

    def problems(self, window: WindowResult, verdicts: Sequence[Verdict], *, number: int = 1,
                 of: int = 1) -> list[str]:
        """Why ``window`` fails (empty: it passes), under --llmperf-strict-validity."""
        return window_problems(window, verdicts, strict_validity=self.checks.strict_validity,
                               number=number, of=of)

    # --- many loads ----------------------------------------------------------------------

    def sweep(self, *, users: Sequence[int] | None = None,
              rates: Sequence[float] | None = None, shapes: Sequence[LoadShape] | None = None,
              requests: int | Sequence[int] | None = None, duration_s: float | None = None,
              max_tokens: int | None = None) -> SweepResult:
        """Each load its own warm-up and measured window; ``requests``: one count for every
        point, or one per point."""
        if sum(x is not None for x in (users, rates, shapes)) != 1:
            raise TypeError("a sweep takes one of users=, rates= or shapes=")
        chosen = (list(shapes) if shapes is not None
                  else [self.load.closed_shape(n) for n in users] if users is not None
                  else [self.load.open_shape(r) for r in rates or ()])
        if not chosen:
            raise ValueError("a sweep needs at least one load")
        counts = (list(requests) if isinstance(requests, Sequence)
                  else [requests] * len(chosen))
        if len(counts) != len(chosen):
            raise ValueError(f"a sweep got {len(counts)} request counts for {len(chosen)} "
                             "loads")
        points = tuple(self.window(shape=shape, requests=count, duration_s=duration_s,
                                   max_tokens=max_tokens)
                       for shape, count in zip(chosen, counts, strict=True))
        return SweepResult("rate" if chosen[0].is_open else "users", points)

    def stages(self, stages: Sequence[RateStage], *, warmup: int | None = None,
               max_tokens: int | None = None, prompts: PromptSource | None = None,
               label: str = "") -> SweepResult:
        """Staged rates (results.rate_stages) as one schedule, with the run's arrivals: one
        window per stage, its requests those scheduled in it (load.staged).  With
        ``--llmperf-repeats K`` the schedule runs K times back to back, each stage's first
        window with its later ones as ``repeats``."""
        shape = self.load.staged_shape(stages)
        warm = self.load.warmup if warmup is None else warmup
        assert shape.duration_s is not None
        lasts = shape.duration_s + warm / shape.stages[0].mean_rate
        if lasts > self.load.window_timeout:
            raise ValueError(
                f"the stages and their warm-up last {lasts:g} s, past the window's deadline "
                f"of {self.load.window_timeout:g} s (--llmperf-window-timeout): shorten the "
                "stages or raise the deadline")
        served = self.live()
        repeats = self.load.repeats
        runs = [self._measure(served, shape, requests=None, duration_s=shape.duration_s,
                              # The warm-up runs once: the server is warm for the repeats.
                              warmup=warm if repeat == 1 else 0, max_tokens=max_tokens,
                              prompts=prompts,
                              label=f"{label} {shape.label}" if label else shape.label).stages
                for repeat in range(1, repeats + 1)]
        names, points = [], []
        for number, stage in enumerate(stages, 1):
            windows = [run[number - 1] for run in runs]
            names.append(f"stage {number}: {stage.label}")
            for repeat, window in enumerate(windows, 1):
                again = f", repeat {repeat} of {repeats}" if repeats > 1 else ""
                self._say(f"{label or 'stages'}: stage {number} of {len(stages)} "
                          f"({stage.label}{again}): {window.requests} requests, "
                          f"{window.metrics.value('request_throughput') or 0:.2f} req/s "
                          "sustained")
                if self.on_window is not None:
                    self.on_window(window, repeat if repeats > 1 else None)
            points.append(dataclasses.replace(windows[0], repeats=tuple(windows[1:])))
        return SweepResult("rate", tuple(points), labels=tuple(names))

    def capacity(self, dimension: str = "users", checks: Sequence[Check] = (), *,
                 start: float | None = None, maximum: float | None = None,
                 budget_s: float | None = None, requests: int | None = None,
                 shape: LoadShape | None = None, max_tokens: int | None = None,
                 probe_s: float = 10.0) -> CapacityResult:
        """The highest load of ``dimension`` ("users" or "rate") at which every check holds
        (searches.capacity), settled by pooling its probes (searches.capacity_settle); each
        probe its own window, judged without failing anything."""
        from pytest_llmperf.searches.capacity import search_capacity
        from pytest_llmperf.searches.capacity_probe import probe_estimate
        from pytest_llmperf.searches.capacity_settle import PooledSettler

        if dimension not in ("users", "rate"):
            raise ValueError(f"a capacity search is over users or rate, not {dimension!r}")
        base = shape or (self.load.closed_shape(1) if dimension == "users"
                         else self.load.open_shape(1.0))
        if base.is_open != (dimension == "rate"):
            raise ValueError(f"a {dimension} search needs a "
                             f"{'open' if dimension == 'rate' else 'closed'}-loop shape")
        served = self.live()
        size = requests or self.search.probe_requests
        held = tuple(checks)

        def probe(load: float) -> ProbeOutcome:
            return self._probe(served, base.with_load(load), held, size, max_tokens,
                               dimension, probe_s)

        def pooled(load: float, more: int, earlier: Sequence[RequestRecord],
                   earlier_s: float) -> ProbeOutcome:
            return self._probe(served, base.with_load(load), held, more, max_tokens,
                               dimension, probe_s, pooled=(tuple(earlier), earlier_s))

        result = search_capacity(
            probe, dimension=dimension, start=start if start is not None else 1.0,
            maximum=maximum if maximum is not None else self.search.maximum(dimension),
            budget_s=budget_s if budget_s is not None else self.search.capacity_budget,
            estimate=probe_estimate(base, size, self.load.warmup, probe_s),
            settler=PooledSettler(held, pooled))
        self._say(f"capacity ({dimension}): {result.summary} [{result.elapsed_s:.0f} s]")
        return result

    def _probe(self, served: ServedModel, shape: LoadShape, checks: tuple[Check, ...],
               requests: int, max_tokens: int | None, dimension: str, probe_s: float,
               pooled: tuple[tuple[RequestRecord, ...], float] = ((), 0.0)) -> ProbeOutcome:
        """One probe: a window at ``shape`` judged against ``checks``, stopped early once
        clearly failed.  ``pooled``: earlier requests at the same load and their seconds; the
        probe then measures exactly ``requests`` more and is judged on them all."""
        from pytest_llmperf.load.closed_loop import VerdictStop
        from pytest_llmperf.searches.capacity_probe import probe_outcome, probe_size
        from pytest_llmperf.searches.capacity_settle import pooled_window, settling_stop
        from pytest_llmperf.searches.probe_rules import clearly_failed

        earlier, earlier_s = pooled
        planned, warmup = probe_size(shape, requests, self.load.warmup, probe_s)
        # Either rule's reason decides the probe's verdict: an open loop abandons what is
        # still in flight rather than wait for an overloaded server to drain it.
        stop = VerdictStop(lambda done: clearly_failed(checks, done, planned))
        if earlier:
            planned = requests
            stop = VerdictStop(settling_stop(checks, earlier, len(earlier) + planned))
        pool = f", pooled with {len(earlier)} earlier" if earlier else ""
        self._say(f"capacity ({dimension}): probing {shape.label}, {planned} requests{pool} ...")
        began = time.monotonic()
        window = self._measure(served, shape, requests=planned, duration_s=None, warmup=warmup,
                               max_tokens=max_tokens, prompts=None,
                               label=f"capacity ({dimension}) probe {shape.label}", stop=stop)
        judged = pooled_window(window, earlier, earlier_s) if earlier else window
        outcome = probe_outcome(shape.load, window, self.judge(judged, checks), checks,
                                time.monotonic() - began, pooled=len(earlier))
        verdict = ("pass" if outcome.passed and not window.run.stopped_early
                   else f"FAIL ({outcome.broke[0].split(' -- ')[0]})" if outcome.broke
                   else f"undecided ({window.run.stopped_early})")
        stopped = ", stopped early" if window.run.stopped_early else ""
        self._say(f"capacity ({dimension}): {shape.label}: {verdict}{pool}; "
                  f"{window.metrics.value('output_token_throughput') or 0:.1f} tok/s, "
                  f"{window.requests} requests in {outcome.duration_s:.1f} s{stopped}")
        return outcome

    def replay(self, trace: Trace, *, warmup: int | None = None,
               max_concurrency: int | None = None, label: str = "",
               checks: Sequence[Check] = ()) -> WindowResult:
        """The trace's requests at their recorded offsets, each with its own lengths and its
        shared prompt blocks (prompts.trace_prompts), after ``warmup`` warm-up arrivals at its
        mean gap; the window is the whole trace (``--llmperf-trace-window`` slices it)."""
        from pytest_llmperf.prompts.trace_prompts import TracePrompts, replay_shape

        tokenizer = self._tokenizer("a trace replay")
        warm = self.load.warmup if warmup is None else warmup
        return self.window(shape=replay_shape(trace, warm, max_concurrency),
                           requests=len(trace.requests), warmup=warm, label=label,
                           prompts=TracePrompts(tokenizer, trace, warmup=warm,
                                                seed=self.load.seed), checks=checks)

    # --- what a prompt costs -------------------------------------------------------------

    def prefill(self, lengths: Sequence[int] = (128, 512, 2048), *, requests: int = 2,
                users: int = 1, max_tokens: int | None = None) -> tuple[SweepResult, str | None]:
        """One window per prompt length, prompts of exactly that many of the model's tokens;
        with why lengths the context cannot hold were left out (None: none were)."""
        from pytest_llmperf.prompts.synthetic import Lengths, RandomPrompts
        from pytest_llmperf.searches.prefill import fitting_lengths

        served = self.served
        tokenizer = self._tokenizer("the prefill sweep")
        answer = max_tokens or self.load.max_tokens
        fit, left_out = fitting_lengths(sorted(lengths), served.context_tokens, answer)
        if not fit:
            raise Unsupported(f"no prompt of {', '.join(map(str, lengths))} tokens fits the "
                              f"{served.context_tokens}-token context with its answer")
        # One warm-up before the shortest prompts only: it warms the server, and a warm-up
        # of every length would cost as much as the measurement.
        points = tuple(self.window(
            users=users, requests=requests, max_tokens=answer, warmup=None if i == 0 else 0,
            prompts=RandomPrompts(tokenizer, input_lengths=Lengths("fixed", n),
                                  seed=self.load.seed))
            for i, n in enumerate(fit))
        note = (f"{', '.join(map(str, left_out))} tokens left out: the {served.context_tokens}-"
                f"token context holds no such prompt with its {answer}-token answer"
                if left_out else None)
        return SweepResult("input_tokens", points, values=tuple(float(n) for n in fit)), note

    def prefix_cache(self, *, documents: int = 4, document_tokens: int = 1024,
                     question_tokens: int = 32, max_tokens: int = 16,
                     prefix_caching: bool = False) -> PrefixCacheResult:
        """Every document asked once with nothing cached, then each asked a new question;
        ``prefix_caching``: the server was launched with its cache on."""
        from pytest_llmperf.prompts.shared_prefix import SharedPrefixPrompts
        from pytest_llmperf.searches.prefill import fitting_lengths
        from pytest_llmperf.searches.prefix_cache import cache_unavailable

        served = self.served
        reason = cache_unavailable(served, prefix_caching)
        if reason:
            raise Unsupported(reason)
        tokenizer = self._tokenizer("the prefix-cache test")
        fit, _ = fitting_lengths([document_tokens + question_tokens], served.context_tokens,
                                 max_tokens)
        if not fit:
            raise Unsupported(f"a {document_tokens}-token document does not fit the "
                              f"{served.context_tokens}-token context")
        source = SharedPrefixPrompts(
            tokenizer, documents=documents, questions=2, document_tokens=document_tokens,
            question_tokens=question_tokens, output_tokens=max_tokens, seed=self.load.seed)
        # One user, no warm-up: a warm-up would ask the documents before the first pass.
        cold, warm = (self.window(users=1, requests=documents, warmup=0, max_tokens=max_tokens,
                                  prompts=source) for _ in range(2))
        return PrefixCacheResult(cold, warm, document_tokens)

    def _tokenizer(self, what: str) -> Tokenizer:
        served = self.served
        if served.tokenizer is None:
            raise Unsupported(f"{what} makes prompts of exact lengths with the model's "
                              f"tokenizer, and {served.description} offers none")
        return served.tokenizer
