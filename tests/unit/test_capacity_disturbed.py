"""A capacity search on a machine it cannot always trust: a probe whose window was marked
disturbed (other processes took the CPU) or client-bound (the client was the limit) is measured
again, not counted; when no sound measurement can be had the result says it was disturbed, and
a verdict that rests on one probe at its edge says that too."""

from __future__ import annotations

import json
from collections.abc import Callable

from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.observe.health import LIMITS
from pytest_llmperf.report.search_markdown import searches_markdown
from pytest_llmperf.report.terminal import capacity_lines
from pytest_llmperf.results.capacity import CapacityResult, ProbeOutcome
from pytest_llmperf.results.health import Health
from pytest_llmperf.results.jsonfields import Fields
from pytest_llmperf.results.judge import judge_capacity
from pytest_llmperf.results.load_point import LoadPoint
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.recorded import Provenance, RecordedCapacity
from pytest_llmperf.results.records import LoadRun, RequestRecord
from pytest_llmperf.results.thresholds import parse_check, parse_gate
from pytest_llmperf.results.window import WindowResult
from pytest_llmperf.searches.capacity import search_capacity
from pytest_llmperf.store.capacity_compare import compare_capacity

MS = 1_000_000
SERVED = ServedModel("llamacpp", "smollm2-135m", Endpoint("http://127.0.0.1:9/v1", "m"),
                     engine="xllamacpp 2026.10.1")
DISTURBED = Health({"other_cpu_pct": 76.0}, LIMITS, disturbed=("other_cpu_pct 76 > 25",))
CLIENT_BOUND = Health({"loop_lag_ms_p99": 31.0}, LIMITS,
                      client_bound=("loop_lag_ms_p99 31 > 25",))
QUIET = Health({"other_cpu_pct": 3.0}, LIMITS)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def window(users: int, tpot_ms: float, health: Health | None) -> WindowResult:
    records = []
    for i in range(8):
        send = i * 1000 * MS
        chunks = tuple(send + 200 * MS + int(k * tpot_ms * MS) for k in range(10))
        records.append(RequestRecord(i, send, chunks, chunks[-1], 10))
    run = LoadRun(tuple(records), 0, records[-1].end_ns, users, 0)
    return WindowResult(SERVED.info, LoadShape.closed(users), 10, run, health=health)


def scripted(capacity: int, clock: Clock, marked: dict[float, list[Health]],
             seconds: float = 10.0) -> tuple[Callable[[float], ProbeOutcome], list[float]]:
    """Probes that pass up to ``capacity`` users on a quiet machine; ``marked`` gives, per load,
    the health of its next probes in turn (a marked probe fails whatever its load: the other
    process, or the client, made it slow)."""
    loads: list[float] = []

    def probe(load: float) -> ProbeOutcome:
        loads.append(load)
        clock.now += seconds
        health = marked[load].pop(0) if marked.get(load) else QUIET
        passed = load <= capacity and health is QUIET
        measured = window(int(load), 6.0 * load if passed else 25.0 * load, health)
        return ProbeOutcome(load, passed, () if passed else ("tpot_ms.p95 = 26 ms -- x",),
                            headroom=load / (capacity + 0.5), goodput=load * 0.4,
                            duration_s=seconds, point=LoadPoint.of(measured), window=measured)

    return probe, loads


def search(probe: Callable[[float], ProbeOutcome], clock: Clock,
           budget_s: float = 10_000) -> CapacityResult:
    return search_capacity(probe, dimension="users", start=1, maximum=64, budget_s=budget_s,
                           clock=clock)


def test_a_disturbed_probe_is_measured_again_and_not_counted() -> None:
    """The observed case: the probe at 2 users ran while another process took the CPU and
    failed; measured again it passes, and the capacity is the undisturbed one."""
    clock = Clock()
    probe, loads = scripted(3, clock, {2: [DISTURBED]})
    result = search(probe, clock)
    assert loads == [1, 2, 2, 4, 3, 3, 4]
    assert (result.capacity, result.first_failing) == (3, 4)
    assert result.disturbed is None and result.stop_reason == "boundary found"
    assert result.summary == "max 3 users: 3 users passed 2 of 2, 4 users failed 2 of 2"
    discarded = result.probes[1]
    assert (discarded.load, discarded.passed) == (2, False)
    assert discarded.discarded == "disturbed: other_cpu_pct 76 > 25; measured again"
    assert result.count(2) == (1, 1)  # the discarded probe is neither a pass nor a fail
    assert result.broke_first == ("tpot_ms.p95 = 26 ms -- x",)  # from 4 users, not from it
    # Stored and read back, the discarded probe keeps why; a counted one writes no such key.
    stored = json.loads(json.dumps(result.to_json()))
    assert stored["probes"][1]["discarded"] == discarded.discarded
    assert "discarded" not in stored["probes"][0]
    back = CapacityResult.from_json(Fields(stored))
    assert back.probes[1].discarded == discarded.discarded and back.summary == result.summary


def test_a_client_bound_probe_is_measured_again_too() -> None:
    clock = Clock()
    probe, loads = scripted(3, clock, {4: [CLIENT_BOUND]})
    result = search(probe, clock)
    assert loads == [1, 2, 4, 4, 3, 3, 4]
    assert (result.capacity, result.first_failing) == (3, 4)
    assert result.probes[2].discarded == ("client-bound: loop_lag_ms_p99 31 > 25; "
                                          "measured again")
    assert result.count(4) == (0, 2)


def test_a_pass_on_a_disturbed_machine_counts_and_a_client_bound_pass_does_not() -> None:
    """Other work can only have slowed the server: a pass while disturbed held under harder
    conditions than asked.  A client that could not keep up offered less than it says."""
    clock = Clock()
    probes = iter([DISTURBED, CLIENT_BOUND, QUIET])

    def probe(load: float) -> ProbeOutcome:
        clock.now += 10
        measured = window(int(load), 6.0, next(probes))
        return ProbeOutcome(load, True, (), duration_s=10, window=measured)

    result = search_capacity(probe, dimension="users", start=1, maximum=2, budget_s=100,
                             clock=clock)
    assert [(p.load, p.discarded) for p in result.probes] == [
        (1, None), (2, "client-bound: loop_lag_ms_p99 31 > 25; measured again"), (2, None)]
    assert (result.capacity, result.stop_reason) == (2, "maximum load")


SENT_LATE = Health({"send_late_ms_p99": 16.4}, LIMITS,
                   client_bound=("send_late_ms_p99 16.4 > 15.2",))


def test_a_fail_while_sending_late_counts_and_a_pass_while_sending_late_does_not() -> None:
    """An open loop that sent late offered less load than asked: a failure then happened under
    easier conditions than asked and counts (the mirror of a pass while disturbed); a pass
    does not.  A failure while the client's loop lagged says nothing: it read the tokens late."""
    clock = Clock()
    marks = iter([QUIET, SENT_LATE, QUIET, SENT_LATE, QUIET, CLIENT_BOUND, QUIET])

    def probe(load: float) -> ProbeOutcome:
        clock.now += 10
        passed = load < 3
        measured = window(int(load), 6.0 if passed else 60.0, next(marks))
        return ProbeOutcome(load, passed, () if passed else ("tpot_ms.p95 missed",),
                            duration_s=10, window=measured)

    result = search_capacity(probe, dimension="users", start=1, maximum=3, budget_s=100,
                             clock=clock)
    late = "client-bound: send_late_ms_p99 16.4 > 15.2; measured again"
    lagged = "client-bound: loop_lag_ms_p99 31 > 25; measured again"
    assert [(p.load, p.passed, p.discarded) for p in result.probes] == [
        (1, True, None), (2, True, late), (2, True, None),
        (3, False, None),  # sent late, failed: counted
        (2, True, None), (3, False, lagged), (3, False, None)]  # confirming both ends
    assert (result.capacity, result.first_failing) == (2, 3)


def test_a_load_disturbed_every_try_ends_the_search_and_the_headline_says_so() -> None:
    clock = Clock()
    probe, loads = scripted(3, clock, {3: [DISTURBED] * 3})
    result = search(probe, clock)
    assert loads == [1, 2, 4, 3, 3, 3]  # measured, then measured again twice
    assert result.stop_reason == "disturbed"
    assert (result.capacity, result.first_failing) == (2, 4)
    assert result.disturbed == ("disturbed: the probes at 3 users were disturbed and could not "
                                "be measured again in the tries allowed")
    assert result.summary == (
        "max 2 users (disturbed: the probes at 3 users were disturbed and could not be measured "
        "again in the tries allowed): 2 users passed 1 of 1, 4 users failed 1 of 1; rests on "
        "one probe each at 2 users and 4 users")
    assert [p.discarded for p in result.probes[3:]] == [
        "disturbed: other_cpu_pct 76 > 25; measured again",
        "disturbed: other_cpu_pct 76 > 25; measured again",
        "disturbed: other_cpu_pct 76 > 25; not measured again: marked 3 times in a row"]


def test_a_budget_spent_on_a_disturbed_edge_leaves_the_result_disturbed() -> None:
    """4 users failed, the bisection's probe at 3 users was disturbed and the budget (45 s, 10 s
    a probe) had no room to measure it again: the capacity (2) is what is known, and the
    result says its edge is not."""
    clock = Clock()
    probe, loads = scripted(3, clock, {3: [DISTURBED]})
    result = search(probe, clock, budget_s=45)
    assert loads == [1, 2, 4, 3]
    assert result.stop_reason == "budget"
    assert result.probes[-1].discarded == ("disturbed: other_cpu_pct 76 > 25; not measured "
                                           "again: the budget ran out")
    assert result.summary.startswith(
        "max 2 users (disturbed: the probe at 3 users was disturbed and could not be measured "
        "again within the budget): 2 users passed 1 of 1, 4 users failed 1 of 1; the budget "
        "(45 s) ran out first")
    assert result.summary.endswith("rests on one probe each at 2 users and 4 users")
    assert CapacityResult.from_json(Fields(result.to_json())).disturbed == result.disturbed

    # A limit on the capacity is neither met nor missed; against a baseline it is
    # inconclusive, and a gate does not fail on it.
    (verdict,) = judge_capacity(result, [parse_check("capacity_max_concurrency >= 3", "t")])
    assert verdict.state == "skip" and verdict.passed
    assert "by a search that was disturbed: the probe at 3 users" in verdict.describe()
    (met,) = judge_capacity(result, [parse_check("capacity_max_concurrency >= 2", "t")])
    assert met.state == "pass"
    baseline = search(scripted(3, Clock(), {})[0], Clock())
    change = compare_capacity([baseline], result,
                              parse_gate("capacity_max_concurrency:10%", "t"))
    assert (change.verdict, change.failed) == ("inconclusive", False)
    assert change.describe().startswith(
        "3 -> 2 users (-33.3 %): inconclusive: this search was disturbed: the probe at 3 users")
    # A disturbed baseline run is left out while an undisturbed one remains.
    assert compare_capacity([result, baseline], baseline).verdict == "no significant change"
    assert compare_capacity([result], baseline).verdict == "inconclusive"


def test_a_verdict_on_one_probe_at_the_edge_says_so() -> None:
    """The budget stopped the search before it confirmed: 3 users passed once and 4 users
    failed once, and the headline says the verdict rests on those single probes."""
    clock = Clock()
    probe, loads = scripted(3, clock, {})
    result = search(probe, clock, budget_s=45)
    assert loads == [1, 2, 4, 3]
    assert result.single_probe_edges == (3, 4)
    assert result.summary == ("max 3 users: 3 users passed 1 of 1, 4 users failed 1 of 1; the "
                              "budget (45 s) ran out first; rests on one probe each at 3 users "
                              "and 4 users")
    # Confirmed by the search's own repeat, it does not.
    confirmed = search(scripted(3, Clock(), {})[0], Clock())
    assert confirmed.single_probe_edges == ()
    assert "rests on" not in confirmed.summary


def test_the_probe_table_and_the_terminal_line_show_the_discarded_probe() -> None:
    clock = Clock()
    probe, _ = scripted(3, clock, {2: [DISTURBED]})
    result = search(probe, clock)
    recorded = RecordedCapacity(Provenance("t.py::test_cap[x]"), SERVED.info,
                                LoadShape.closed(1), result, {"tpot_ms.p95": 20.0})
    text = "\n".join(searches_markdown([recorded]))
    row = next(line for line in text.splitlines() if "discarded" in line)
    assert row.startswith("| 2 users | discarded (fail) |")
    assert "discarded: disturbed: other_cpu_pct 76 > 25; measured again; tpot_ms.p95 = 26 ms" \
        in row
    (line,) = capacity_lines([recorded])
    assert "[7 probes (1 discarded), 70 s]" in line


def test_a_settling_probe_cut_short_as_undecidable_while_disturbed_is_measured_again() -> None:
    """A pooled probe that stopped because it could no longer be shown to hold has not
    passed: on a disturbed machine it is discarded like a failure, not counted."""
    from pytest_llmperf.searches.capacity import unsound
    from pytest_llmperf.searches.capacity_settle import UNDECIDABLE

    measured = window(1, 6.0, DISTURBED)
    cut = ProbeOutcome(1, True, (), duration_s=5, window=measured,
                       stopped_early=f"ttft_ms.p95 {UNDECIDABLE} at 63 requests", pooled=12)
    assert unsound(cut) == "disturbed: other_cpu_pct 76 > 25"
    held = ProbeOutcome(1, True, (), duration_s=5, window=measured, pooled=12)
    assert unsound(held) is None
