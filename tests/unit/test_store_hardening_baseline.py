"""A bad baseline is refused when it is read, before any server starts: whatever a stored run
holds, reading it gives a document whose every window can be measured, or a StoreError naming
the file (and the field) — never an AttributeError, OverflowError or ValueError after the
load ran."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_llmperf.settings.resolve import settings_from
from pytest_llmperf.store.baseline import BaselineError, load_baseline
from pytest_llmperf.store.documents import StoreError, load_run, write_run
from tests.unit.test_store import SCHEMA1, rich_document

VALID = json.loads(json.dumps(rich_document().to_json()))
VALID_SCHEMA1 = json.loads(SCHEMA1.read_text())


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


PATHS = {2: _paths(VALID)[1:], 1: _paths(VALID_SCHEMA1)[1:]}

# Any JSON value, with what json writes but strict JSON has not (Infinity, NaN) and numbers
# out of every range.
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.text(max_size=8),
    st.integers(), st.integers(min_value=10**19, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["inf", "-inf", "nan", "", "usage", "http_5xx"]),
)
JSON_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)


def _mutate(document: Any, path: tuple[Any, ...], how: str, value: Any) -> None:
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if how == "delete" and isinstance(parent, dict):
        del parent[key]
    elif how == "wrap":
        parent[key] = [parent[key]]  # an object where a list is expected, and the reverse
    else:
        parent[key] = value


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schema=st.sampled_from([1, 2]), pick=st.integers(min_value=0), value=JSON_VALUES,
       how=st.sampled_from(["replace", "replace", "delete", "wrap"]))
def test_a_mutated_document_is_read_whole_or_refused_naming_the_file(
        tmp_path: Path, schema: int, pick: int, value: Any, how: str) -> None:
    document = copy.deepcopy(VALID if schema == 2 else VALID_SCHEMA1)
    paths = PATHS[schema]
    _mutate(document, paths[pick % len(paths)], how, value)
    path = tmp_path / "0001_before.json"
    path.write_text(json.dumps(document))  # json writes Infinity and NaN as they come
    try:
        run = load_run(path)
    except StoreError as exc:
        assert str(path) in str(exc)
        # Where in the file: a field's path, not only an exception's name.
        assert "cannot be read (" not in str(exc), str(exc)
        return
    for recorded in run.windows:  # read whole: every window measurable now
        assert recorded.window.metrics.summary() is not None


def _record(document: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = document["windows"][0]["window"]["records"][0]
    return record


@pytest.mark.parametrize(("mutate", "field", "says"), [
    (lambda d: d["windows"].__setitem__(0, [1, 2]), "windows[0]", "expected an object"),
    (lambda d: _record(d).__setitem__("end_us", float("inf")),
     "windows[0].window.records[0].end_us", "expected a whole number"),
    (lambda d: _record(d)["chunk_us"].__setitem__(0, float("-inf")),
     "windows[0].window.records[0].chunk_us[0]", "expected a whole number"),
    (lambda d: _record(d).__setitem__("send_us", 1e999),
     "windows[0].window.records[0].send_us", "expected a whole number"),
    (lambda d: _record(d).__setitem__("output_tokens", 10**30),
     "windows[0].window.records[0].output_tokens", "out of range"),
    (lambda d: d["windows"][0].__setitem__("call", 1.5), "windows[0].call",
     "expected a whole number"),
    (lambda d: d["windows"][0].__setitem__("call", "2"), "windows[0].call",
     "expected a whole number"),
    (lambda d: _record(d).__setitem__("error", ["HTTP 500"]),
     "windows[0].window.records[0].error", "expected text"),
    (lambda d: _record(d).__setitem__("error_kind", "gremlins"),
     "windows[0].window.records[0].error_kind", "is not one of"),
    (lambda d: d["windows"][0]["resources"]["metrics"].__setitem__("gpu_util_mean", 10**400),
     "windows[0].resources.metrics.gpu_util_mean", "out of range"),
    (lambda d: d["windows"][0]["window"].__setitem__("duration_ns", float("nan")),
     "windows[0].window.duration_ns", "expected a whole number"),
])
def test_a_bad_field_is_named(tmp_path: Path, mutate: Callable[[dict[str, Any]], None],
                              field: str, says: str) -> None:
    document = copy.deepcopy(VALID)
    mutate(document)
    path = tmp_path / "0001_before.json"
    path.write_text(json.dumps(document))
    with pytest.raises(StoreError) as info:
        load_run(path)
    assert str(path) in str(info.value)
    assert field in str(info.value) and says in str(info.value)


def test_a_bad_baseline_is_refused_when_the_settings_are_read(tmp_path: Path) -> None:
    """load_baseline runs while pytest configures, before any server starts."""
    document = copy.deepcopy(VALID)
    _record(document)["end_us"] = float("inf")
    storage = tmp_path / ".llmperf"
    storage.mkdir()
    (storage / "0001_before.json").write_text(json.dumps(document))
    settings = settings_from(tmp_path, compare="before")
    with pytest.raises(BaselineError, match=r"--llmperf-compare: .*0001_before\.json: "
                                            r"windows\[0\]\.window\.records\[0\]\.end_us"):
        load_baseline(settings.store, tmp_path, {"cpu_model": "x"})


def test_a_valid_document_is_not_refused(tmp_path: Path) -> None:
    assert load_run(write_run(rich_document(), tmp_path / "run.json")).windows
    assert load_run(SCHEMA1).windows
