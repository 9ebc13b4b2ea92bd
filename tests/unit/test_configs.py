"""``python -m pytest_llmperf configs``: which configuration to deploy.  Documents built in code
with known capacities (A: 2 L4s holding 8 users, B: one H100 holding 5, C: 4 T4s it did not
fit), and one real capacity search per configuration against the measuring-instrument stub."""

from __future__ import annotations

import html.parser
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_llmperf.__main__ import main as cli
from pytest_llmperf.configs import Prices, compare_configs, configs_markdown, parse_price
from pytest_llmperf.configs.configuration import label_of, split_runs
from pytest_llmperf.configs.figures import figures_of
from pytest_llmperf.configs.prices import PriceError, cost_per_million
from pytest_llmperf.results.capacity import CapacityResult, ProbeOutcome
from pytest_llmperf.results.load_point import LoadPoint
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.recorded import Provenance, RecordedCapacity
from pytest_llmperf.results.served import ServedInfo
from pytest_llmperf.results.unmeasured import UnmeasuredTest
from pytest_llmperf.store.documents import load_run, write_run
from pytest_llmperf.store.run_document import RunDocument

REPO = Path(__file__).resolve().parents[2]
NODE = "tests/perf/test_capacity.py::test_capacity_users[vllm-qwen32b-gptq]"
L4, H100, T4 = "NVIDIA L4", "NVIDIA H100 80GB HBM3", "Tesla T4"
PRICES = Prices.parse([f"{L4}=0.30/h", f"{H100}=2.50/h", f"{T4}=0.35/h"])
NO_PRICES = Prices({})


def fingerprint(gpu: str, count: int) -> dict[str, object]:
    return {"cpu_model": "AMD EPYC 7B13", "cpu_cores": 32, "gpu_models": [gpu] * count,
            "gpu_count": count}


def point(load: float, per_user: float) -> LoadPoint:
    """A load's figures: every user decodes at ``per_user`` tok/s."""
    return LoadPoint(load, f"{load:g} users", 12, 5.0, ttft_ms_p95=100 + 10 * load,
                     decode_tokens_per_s_mean=per_user,
                     output_token_throughput=per_user * load)


def search(capacity: float | None, failing: float | None, *, top: int = 32,
           stop: str = "boundary found") -> CapacityResult:
    """A search that doubled, then bisected: every load up to ``capacity`` passed (it twice),
    every load from ``failing`` up failed (it twice)."""
    loads = [1.0]
    while loads[-1] * 2 <= top and (failing is None or loads[-1] < failing):
        loads.append(loads[-1] * 2)
    probes = []
    for load in sorted({*loads, *(x for x in (capacity, failing) if x is not None)}):
        passed = capacity is not None and load <= capacity
        repeats = 2 if load in (capacity, failing) else 1
        probes += [ProbeOutcome(load, passed, () if passed else ("tpot_ms.p95 = 120 ms",),
                                headroom=0.9, goodput=load / 10, point=point(load, 60 - load))
                   for _ in range(repeats)]
    return CapacityResult("users", capacity, failing, tuple(probes), stop, 30.0, 40.0)


def capacity_run(capacity: float | None, failing: float | None, gpu: str, count: int, *,
                 host: str | None = None, stop: str = "boundary found",
                 engine: str = "vllm 0.11.0") -> RunDocument:
    served = ServedInfo("vllm", "qwen32b-gptq", engine)
    recorded = RecordedCapacity(Provenance(NODE, outcome="passed", host=host), served,
                                LoadShape.closed(1), search(capacity, failing, stop=stop),
                                slo_lines={"decode_tokens_per_s.mean": 10.0})
    return RunDocument("2026-12-06T10:00:00+00:00", fingerprint(gpu, count), (), (recorded,))


def did_not_fit() -> RunDocument:
    skipped = UnmeasuredTest(NODE, "skipped", "vllm-qwen32b-gptq: does not fit: 19.4 GiB of "
                             "weights on a GPU of 15.0 GiB (tensor parallel 1)")
    return RunDocument("2026-12-06T10:00:00+00:00", fingerprint(T4, 4), (), (),
                       unmeasured=(skipped,))


def abc() -> list[tuple[str, RunDocument]]:
    return [("A", capacity_run(8, 9, L4, 2)), ("B", capacity_run(5, 6, H100, 1)),
            ("C", did_not_fit())]


def verdict(documents: list[tuple[str, RunDocument]], prices: Prices = NO_PRICES,
            **target: float) -> list[str]:
    (comparison,) = compare_configs(documents, prices=prices, **target)  # type: ignore[arg-type]
    (recommendation,) = comparison.recommendations
    return list(recommendation.lines)


def test_default_target_is_the_highest_load_held_and_only_a_holds_it() -> None:
    lines = verdict(abc())
    assert lines[0] == ("Deploy **A** (2x NVIDIA L4, vllm 0.11.0) for qwen32b-gptq at 8 users "
                        "(test_capacity_users): the only configuration that holds every SLO "
                        "there.")
    assert lines[1] == "Margin: it held 8 users against a target of 8 users (+0, 0%)."
    assert lines[2] == ("How sure: max 8 users: 8 users passed 2 of 2, 9 users failed 2 of 2 "
                        "(gradual boundary).")
    assert len(lines) == 3  # A (8, failed 9) and B (5, failed 6) are told apart


def test_without_prices_the_fewest_gpus_then_the_most_headroom() -> None:
    lines = verdict(abc(), users=5)
    assert lines[0].startswith("Deploy **B** (1x NVIDIA H100 80GB HBM3, vllm 0.11.0) for "
                               "qwen32b-gptq at 5 users")
    assert "the fewest GPUs (1), then the most headroom, of 2 that hold" in lines[0]
    assert lines[1] == "Margin: it held 5 users against a target of 5 users (+0, 0%)."


def test_with_prices_the_cheapest_hour_wins_and_costs_per_million_tokens_are_shown() -> None:
    lines = verdict(abc(), PRICES, users=5)
    # A: 2 x 0.30 = 0.60 $/h at 8 x 52 = 416 tok/s; B: 2.50 $/h.
    assert lines[0] == ("Deploy **A** (2x NVIDIA L4, vllm 0.11.0) for qwen32b-gptq at 5 users "
                        "(test_capacity_users): the cheapest of 2 that hold every SLO there; "
                        "$0.60/h, $0.40 per million output tokens at its highest held load.")
    assert lines[1] == "Margin: it held 8 users against a target of 5 users (+3, 60%)."


def test_cost_per_million_output_tokens() -> None:
    assert cost_per_million(0.60, 416) == pytest.approx(0.60 / (416 * 3600) * 1e6)
    assert cost_per_million(2.50, 275) == pytest.approx(2.5252525)
    assert cost_per_million(None, 100) is None and cost_per_million(1.0, 0) is None
    assert PRICES.hourly(split_runs(abc())[0].config) == pytest.approx(0.60)
    (comparison,) = compare_configs(abc(), prices=PRICES)
    ((_test, group),) = comparison.tests
    from pytest_llmperf.configs.render import rows_of

    rows = {row[0]: row for row in rows_of(group, PRICES)}
    assert rows["A"][6:] == ["416.0", "52.0", "180", "-", "-", "0.60", "0.40"]
    assert rows["B"][6:] == ["275.0", "55.0", "150", "-", "-", "2.50", "2.53"]
    assert rows["C"][4] == "skipped" and "does not fit" in rows["C"][5]


def test_capacities_that_overlap_cannot_be_told_apart() -> None:
    documents = [("A", capacity_run(8, 9, L4, 2)), ("D", capacity_run(8, 9, H100, 1))]
    lines = verdict(documents)
    assert lines[0].startswith("Deploy **D** ")  # one GPU against two
    assert lines[3] == ("D and A cannot be told apart: their capacities overlap within the "
                        "searches' uncertainty (D: held 8 users, failed at 9 users; A: held 8 "
                        "users, failed at 9 users).")
    # A search the budget cut at 4 users, nothing failed: it may hold as much as A.
    documents = [("A", capacity_run(8, 9, L4, 2)),
                 ("E", capacity_run(4, None, H100, 1, stop="budget"))]
    lines = verdict(documents)
    assert lines[0].startswith("Deploy **A** ")
    assert "A and E cannot be told apart" in lines[3]
    assert "E: held 4 users, nothing above it failed" in lines[3]


def test_no_configuration_holds_the_target() -> None:
    lines = verdict(abc(), users=10)
    assert lines == ["No configuration holds 10 users in test_capacity_users: the most any held "
                     "is 8 users (A)."]
    lines = verdict([("B", capacity_run(5, 6, H100, 1)),
                     ("E", capacity_run(4, None, H100, 1, stop="budget"))], users=6)
    assert lines[1] == ("E held 4 users and failed no load above it: it may hold 6 users "
                        "(search higher, or give it more budget).")


def test_skipped_configurations_are_listed_with_the_reason() -> None:
    markdown = configs_markdown(abc(), prices=[f"{L4}=0.30/h"])
    assert "Not measured:" in markdown
    assert ("- **C** (4x Tesla T4): skipped: vllm-qwen32b-gptq: does not fit"
            in markdown)
    assert "| A " in markdown and "| 2x NVIDIA L4 " in markdown
    assert "Prices: NVIDIA L4 $0.3/h." in markdown


def test_a_multi_host_document_is_one_configuration_per_host() -> None:
    own = capacity_run(8, 9, L4, 2)
    other = capacity_run(5, 6, H100, 1, host="gpu-b")
    document = RunDocument(own.created, own.fingerprint, (), (*own.searches, *other.searches),
                           hosts={"gpu-b": fingerprint(H100, 1)},
                           unmeasured=(UnmeasuredTest(NODE, "failed", "server did not start: "
                                                      "exit code 1", host="gpu-c"),))
    runs = split_runs([("cluster", document)])
    assert [(r.config.label, r.config.hardware.text) for r in runs] == [
        ("cluster", "2x NVIDIA L4"), ("gpu-b", "1x NVIDIA H100 80GB HBM3"),
        ("gpu-c", "CPU: ?")]
    assert [f.held.load if f.held else f.reason for r in runs for f in figures_of(r)] == [
        8, 5, "failed: server did not start: exit code 1"]
    lines = verdict([("cluster", document)], users=5)
    assert lines[0].startswith("Deploy **gpu-b** ")


def test_labels_come_from_saved_run_names_and_repeat_with_their_file() -> None:
    assert label_of(Path(".llmperf/0003_a6000x2.json")) == "a6000x2"
    assert label_of(Path("llmperf-output/results.json")) == "llmperf-output"
    assert label_of(Path("out/h100-fp8.json")) == "h100-fp8"
    runs = split_runs([("A", capacity_run(8, 9, L4, 2)), ("A", capacity_run(5, 6, L4, 2))],
                      ["0001_A.json", "0002_A.json"])
    assert [r.config.label for r in runs] == ["A (0001_A.json)", "A (0002_A.json)"]


def test_prices_are_read_strictly() -> None:
    assert parse_price("NVIDIA RTX A6000=0.79/h") == ("NVIDIA RTX A6000", 0.79)
    assert parse_price("a=b=$1.5/hour") == ("a=b", 1.5)
    for text, said in (("NVIDIA L4", "no '='"), ("=1/h", "no GPU model"),
                       ("L4=0.79", "not an amount an hour"), ("L4=0.79/month", "per 'month'"),
                       ("L4=cheap/h", "'cheap' is not a number"), ("L4=-1/h", ">= 0"),
                       ("L4=inf/h", "finite")):
        with pytest.raises(PriceError, match=re.escape(said)):
            parse_price(text)


def test_the_served_info_keeps_tensor_parallel_and_quantization_when_known() -> None:
    from pytest_llmperf.results.jsonfields import Fields

    plain = ServedInfo("vllm", "m", "vllm 0.11.0")
    assert "quantization" not in plain.to_json()  # documents read and write as before
    rich = ServedInfo("vllm", "m", "vllm 0.11.0", tensor_parallel=2, quantization="gptq",
                      engine_args=("--max-num-seqs", "64"))
    assert ServedInfo.from_json(Fields(rich.to_json())) == rich
    assert ServedInfo.from_json(Fields(plain.to_json())) == plain


# --- the command -----------------------------------------------------------------------------

def saved(tmp_path: Path) -> list[str]:
    paths = []
    for number, (label, document) in enumerate(abc(), 1):
        paths.append(str(write_run(document, tmp_path / f"{number:04d}_{label}.json")))
    return paths


def test_the_command_writes_the_table_markdown_and_charts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert load_run(Path(saved(tmp_path)[2])).unmeasured  # kept through the store
    out = tmp_path / "report" / "configs.md"
    code = cli(["configs", *saved(tmp_path), "--price", f"{L4}=0.30/h", "--price",
                f"{H100}=2.50/h", "--users", "5", "--markdown", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "Deploy A (2x NVIDIA L4, vllm 0.11.0)" in printed
    assert re.search(r"^A +2x NVIDIA L4 +vllm 0.11.0 +TP \?, \? +8 users ", printed, re.M)
    chart = tmp_path / "report" / "configs-qwen32b-gptq-test_capacity_users.png"
    assert chart.stat().st_size > 10_000
    markdown = out.read_text()
    assert "> Deploy **A**" in markdown
    assert "![qwen32b-gptq: configurations](configs-qwen32b-gptq-test_capacity_users.png)" \
        in markdown


def test_the_command_writes_one_self_contained_html_file(tmp_path: Path) -> None:
    out = tmp_path / "configs.html"
    assert cli(["configs", *saved(tmp_path), "--html", str(out)]) == 0
    text = out.read_text()
    assert "data:image/png;base64," in text and "Deploy <strong>A</strong>" in text

    class Tags(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.links: list[str] = []
            self.tags: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append(tag)
            self.links += [v or "" for k, v in attrs if k in ("src", "href")]

    parser = Tags()
    parser.feed(text)
    parser.close()
    assert {"html", "table", "img", "style"} <= set(parser.tags)
    assert all(link.startswith("data:image/png;base64,") for link in parser.links)
    assert "http://" not in text and "https://" not in text


def test_bad_input_is_refused_naming_it(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    runs = saved(tmp_path)
    other = tmp_path / "notes.json"
    other.write_text('{"hello": 1}')
    assert cli(["configs", runs[0], str(other)]) == 2
    assert f"{other} is not a pytest-llmperf run" in capsys.readouterr().err
    for args, said in ((["--price", "NVIDIA L4=0.30/month"], "per 'month'"),
                       (["--price", "NVIDIA L4"], "'NVIDIA L4': no '='"),
                       (["--users", "5", "--rate", "2"], "not allowed with argument"),
                       (["--users", "0"], "give at least 1 user"),
                       (["--rate", "fast"], "'fast' is not a rate")):
        with pytest.raises(SystemExit) as exited:
            cli(["configs", *runs, *args])
        assert exited.value.code == 2
        assert said in capsys.readouterr().err


# --- a real capacity search per configuration --------------------------------------------

# The stub's token gap is 4 ms plus PER_STREAM ms per other stream in flight: tpot_ms.p95 < 38
# holds up to 9 users with 4 ms per stream (36 ms), up to 5 with 8 ms (36 ms).
THRESHOLDS = ('[defaults]\nslo = ["tpot_ms.p95 < 38", "error_rate <= 0", '
              '"decode_tokens_per_s.mean >= 20"]\n')


def measure(tmp_path: Path, name: str, per_stream: str) -> None:
    from tests.fakes.stub_process import running_stub

    with running_stub("--token-ms", "4", "--per-stream-ms", per_stream, "--first-ms", "5",
                      "--jitter", "0") as url:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "perf/test_capacity.py::test_capacity_users",
             "-p", "no:cacheprovider", "--backend", "openai", "--model", "stub",
             "--base-url", url, "--llmperf-max-tokens=24", "--llmperf-capacity-budget=60",
             f"--llmperf-save={name}", "--llmperf-storage=store"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "GITHUB_STEP_SUMMARY": ""})
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_configs_names_the_stub_configuration_that_holds_more(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    shutil.copytree(REPO / "tests" / "perf", tmp_path / "perf")
    (tmp_path / "thresholds.toml").write_text(THRESHOLDS)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    started = time.monotonic()
    measure(tmp_path, "big", "4")
    measure(tmp_path, "small", "8")
    runs = [str(tmp_path / "store" / "0001_big.json"), str(tmp_path / "store" / "0002_small.json")]
    out = tmp_path / "configs.md"
    assert cli(["configs", *runs, "--markdown", str(out)]) == 0
    printed = capsys.readouterr().out
    print(printed, f"measured in {time.monotonic() - started:.0f} s", sep="\n")
    assert "Deploy big (CPU: " in printed and " at 9 users (test_capacity_users)" in printed
    assert "How sure: max 9 users: 9 users passed 2 of 2, 10 users failed 2 of 2" in printed
    # Priced by label, at 5 users both hold: the cheaper one.
    assert cli(["configs", *runs, "--users", "5", "--price", "big=1.00/h", "--price",
                "small=0.40/h", "--markdown", str(tmp_path / "priced.md")]) == 0
    printed = capsys.readouterr().out
    print(printed)
    assert "Deploy small (CPU: " in printed and "the cheapest of 2" in printed
    assert "max 5 users: 5 users passed 2 of 2, 6 users failed 2 of 2" in printed


def test_runs_saved_under_one_name_are_its_history_and_the_newest_is_compared(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Three runs of A (capacity 8, then 8, then 6 after an upgrade: drift a team must see)
    and one of B: the comparison uses A's newest run, the history shows all three."""
    import dataclasses

    runs = [("2026-12-01T10:00:00+00:00", 8, 9, "vllm 0.10.0"),
            ("2026-12-03T10:00:00+00:00", 8, 9, "vllm 0.10.2"),
            ("2026-12-05T10:00:00+00:00", 6, 7, "vllm 0.11.0")]
    paths = []
    for number, (created, capacity, failing, engine) in enumerate(reversed(runs), 1):
        document = dataclasses.replace(capacity_run(capacity, failing, L4, 2, engine=engine),
                                       created=created)
        paths.append(write_run(document, tmp_path / f"{number:04d}_A.json"))
    paths.append(write_run(capacity_run(5, 6, H100, 1), tmp_path / "0004_B.json"))
    out = tmp_path / "out" / "configs.md"
    assert cli(["configs", *map(str, paths), "--users", "5", "--markdown", str(out)]) == 0
    text = out.read_text()
    table = text[:text.index("## History of A")]
    a_row = next(line for line in table.splitlines() if line.startswith("| A "))
    assert "vllm 0.11.0" in a_row and "| 6 users" in a_row  # the newest run of A
    assert "(0001_A.json)" not in table  # one configuration per name, not one per file
    history = text[text.index("## History of A"):]
    rows = [line for line in history.splitlines() if line.startswith("| qwen32b-gptq")]
    assert [row.split("|")[2].strip() for row in rows] == [
        "2026-12-01T10:00:00+00:00", "2026-12-03T10:00:00+00:00", "2026-12-05T10:00:00+00:00"]
    assert [row.split("|")[5].strip() for row in rows] == ["8 users", "8 users", "6 users"]
    assert "## History of B" not in text  # one run: no history
    chart = tmp_path / "out" / "history-A.png"
    assert chart.stat().st_size > 10_000 and "](history-A.png)" in history
    assert "history of A" in capsys.readouterr().out
