"""The model catalogue: shipped entries, user entries in thresholds.toml, engine ids, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.engines.catalog import (
    Catalog,
    CatalogError,
    ModelEntry,
    ModelSource,
    builtin_catalog,
    entries_from_thresholds,
    parse_entry,
)
from pytest_llmperf.results.thresholds import ThresholdError, load_thresholds


def test_shipped_catalogue_has_the_seed_models_with_their_sources() -> None:
    entries = builtin_catalog().entries
    assert entries["qwen72b-gptq"].source(["hf"]) == ModelSource(
        "hf", "Qwen/Qwen2.5-72B-Instruct-GPTQ-Int4", "gptq", 4.6)
    assert entries["qwen72b-gptq"].tp == 2
    assert entries["qwen32b-gptq"].source(["hf"]).id == "Qwen/Qwen2.5-32B-Instruct-GPTQ-Int4"
    assert entries["qwen72b-q4km"].source(["ollama"]).id == "qwen2.5:72b-instruct-q4_K_M"
    assert entries["qwen32b-q4km"].source(["ollama"]).id == "qwen2.5:32b-instruct-q4_K_M"
    assert entries["deepseek-r1-qwen32b"].source(["hf"]).id == \
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"
    assert entries["deepseek-r1-llama70b"].source(["ollama"]).id == "deepseek-r1:70b"
    smollm = entries["smollm2-135m"]
    assert smollm.source(["gguf"]).embedded == "smollm2-135m"
    # Size facts the memory estimate needs, on every shipped entry.
    for entry in entries.values():
        assert entry.params_b and entry.layers and entry.kv_heads and entry.head_dim, entry.alias


def test_source_follows_the_engine_preference_order() -> None:
    smollm = builtin_catalog().entries["smollm2-135m"]
    assert smollm.source(["gguf", "hf"]).kind == "gguf"
    assert smollm.source(["hf", "gguf"]).kind == "hf"
    assert builtin_catalog().entries["qwen72b-gptq"].source(["ollama"]) is None


@pytest.mark.parametrize(
    ("name", "kinds"),
    [
        ("Qwen/Qwen2.5-0.5B-Instruct", {"hf", "ollama"}),
        ("qwen2.5:0.5b", {"hf", "ollama"}),
        ("/models/x.gguf", {"gguf"}),
    ],
)
def test_an_engine_id_is_taken_as_it_is(name: str, kinds: set[str]) -> None:
    entry = builtin_catalog().resolve(name, "--model (command line)")
    assert set(entry.sources) == kinds
    assert all(source.id == name for source in entry.sources.values())
    assert entry.params_b is None  # no size facts: the fit check makes no verdict


def test_a_local_directory_is_an_hf_source(tmp_path: Path) -> None:
    entry = builtin_catalog().resolve(str(tmp_path), "--model (command line)")
    assert entry.sources == {"hf": ModelSource("hf", str(tmp_path.resolve()))}
    assert entry.name == tmp_path.name


def test_unknown_alias_lists_the_known_ones_and_where_it_came_from() -> None:
    catalog = Catalog({"a": ModelEntry("a", {"hf": ModelSource("hf", "x/a")}),
                       "b": ModelEntry("b", {"hf": ModelSource("hf", "x/b")})})
    with pytest.raises(CatalogError) as info:
        catalog.resolve("c", "LLMPERF_MODEL (environment)")
    assert str(info.value).startswith(
        "LLMPERF_MODEL (environment): unknown model 'c'; known aliases: a, b (add your own")


def test_any_name_is_taken_for_servers_that_name_their_own_models() -> None:
    entry = builtin_catalog().resolve("gpt-4o-mini", "--model", any_name=True)
    assert entry.source(["hf"]) == ModelSource("hf", "gpt-4o-mini")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "x: a catalogue entry needs at least one source"),
        ({"hf": {"id": ""}}, "hf: id must be a non-empty string"),
        ({"hf": {"id": "a/b", "bitz": 4}}, "hf: unknown key 'bitz'"),
        ({"hf": {"id": "a/b", "bits": 0}}, "hf: bits must be a number from 1 to 32, got 0"),
        ({"hf": "a/b", "layers": 2.5}, "layers: expected a whole number, got 2.5"),
        ({"hf": "a/b", "params_b": -1}, "params_b: expected a positive number, got -1"),
        ({"hf": "a/b", "tp": True}, "tp: expected a positive number, got True"),
        ({"hf": 3}, "hf: expected { id = \"...\", bits = N } or a string"),
    ],
)
def test_bad_entries_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(CatalogError) as info:
        parse_entry("x", table, "here")
    assert str(info.value).startswith(message)


def test_user_entry_in_thresholds_overrides_and_extends(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.toml"
    path.write_text(
        '[defaults]\nslo = ["error_rate <= 0.01"]\n\n'
        '[models.qwen72b-gptq]\nslo = ["tpot_ms.p95 < 80"]\ntp = 4\n'
        'hf = { id = "/models/qwen72b", quantization = "gptq", bits = 4.6 }\n'
    )
    thresholds = load_thresholds(path)
    catalog = builtin_catalog().merged(entries_from_thresholds(thresholds))
    entry = catalog.entries["qwen72b-gptq"]
    assert (entry.tp, entry.source(["hf"]).id) == (4, "/models/qwen72b")
    assert entry.origin == f"{path}:4"
    assert "smollm2-135m" in catalog.entries
    # The model table's SLOs still apply.
    checks = thresholds.for_test(backend="vllm", model="qwen72b-gptq", test="t")
    assert "tpot_ms.p95 < 80" in [check.text for check in checks]


def test_slo_only_model_tables_are_not_catalogue_entries(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.toml"
    path.write_text('[models.smollm2-135m]\nslo = ["tpot_ms.p95 < 80"]\n')
    assert entries_from_thresholds(load_thresholds(path)) == {}


def test_bad_entry_in_thresholds_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.toml"
    path.write_text('[defaults]\nslo = []\n\n[models.mine]\nhf = "a/b"\nlayers = 2.5\n')
    with pytest.raises(ThresholdError) as info:
        entries_from_thresholds(load_thresholds(path))
    assert str(info.value) == (
        f"{path}:6: [models.mine] layers: expected a whole number, got 2.5")


def test_catalogue_file_named_by_thresholds(tmp_path: Path) -> None:
    (tmp_path / "models.toml").write_text('[models.team]\nollama = "llama3.1:8b"\n')
    path = tmp_path / "thresholds.toml"
    path.write_text('catalog = "models.toml"\n[defaults]\nslo = []\n')
    entry = entries_from_thresholds(load_thresholds(path))["team"]
    assert entry.source(["ollama"]) == ModelSource("ollama", "llama3.1:8b")
    assert entry.origin == f"{tmp_path / 'models.toml'}:1"


@pytest.mark.parametrize(
    ("catalog_text", "message"),
    [
        (None, "cannot read catalogue file"),
        ('[models.team]\nslo = ["tpot_ms.p95 < 1"]\nhf = "a/b"\n',
         "models.toml:2: SLOs belong in thresholds.toml"),
        ('[tests.x]\nslo = []\n', "models.toml:1: unknown table [tests]"),
        ('[models.team]\nhf = { id = 3 }\n', "models.toml:2: [models.team] hf: id must be"),
    ],
)
def test_bad_catalogue_file(tmp_path: Path, catalog_text: str | None, message: str) -> None:
    if catalog_text is not None:
        (tmp_path / "models.toml").write_text(catalog_text)
    path = tmp_path / "thresholds.toml"
    path.write_text('catalog = "models.toml"\n')
    with pytest.raises(ThresholdError) as info:
        entries_from_thresholds(load_thresholds(path))
    assert message in str(info.value)
