"""Model catalogue: an alias such as ``qwen72b-gptq`` -> what each engine loads, and its size.

The catalogue shipped with the plugin (``catalog.toml`` beside this module) is extended and
overridden by ``[models.ALIAS]`` tables in thresholds.toml.  Each entry names up to three
sources, one per kind of engine:

- ``hf``: a Hugging Face id or local directory (vLLM, SGLang, LMDeploy, TGI, transformers);
- ``ollama``: an Ollama tag;
- ``gguf``: a GGUF file (llama.cpp, transformers); ``embedded:smollm2-135m`` is fetched by us.

A model given on the command line that is no alias but plainly an engine's own id (a path, an
``org/name`` id, an Ollama ``name:tag``) is used as it is, without size facts.
"""

from __future__ import annotations

import importlib.resources
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_llmperf.results.tomlfile import Locator, ThresholdError, parse_toml

if TYPE_CHECKING:
    from pytest_llmperf.results.thresholds import Thresholds

__all__ = [
    "EMBEDDED_PREFIX",
    "ENTRY_KEYS",
    "SOURCE_KINDS",
    "Catalog",
    "CatalogError",
    "ModelEntry",
    "ModelSource",
    "builtin_catalog",
    "catalog_for",
    "entries_from_thresholds",
    "parse_entry",
]

SOURCE_KINDS = ("hf", "ollama", "gguf")
_SIZE_KEYS = ("params_b", "layers", "kv_heads", "head_dim", "context", "tp")
ENTRY_KEYS = frozenset((*SOURCE_KINDS, *_SIZE_KEYS, "reasoning"))
_SOURCE_KEYS = ("id", "quantization", "bits")
EMBEDDED_PREFIX = "embedded:"


class CatalogError(ValueError):
    """A catalogue entry or model name that cannot be used."""


@dataclass(frozen=True)
class ModelSource:
    """What one kind of engine loads: ``Qwen/Qwen2.5-72B-Instruct-GPTQ-Int4``, 4.6 bits."""

    kind: str  # one of SOURCE_KINDS
    id: str
    quantization: str | None = None
    bits: float | None = None  # bits per weight as stored; None when unknown

    @property
    def embedded(self) -> str | None:
        """The alias of a model we fetch ourselves (``embedded:smollm2-135m``), else None."""
        return self.id.removeprefix(EMBEDDED_PREFIX) if self.id.startswith(EMBEDDED_PREFIX) \
            else None


@dataclass(frozen=True)
class ModelEntry:
    """One model: its alias, its sources and the size facts the memory estimate needs."""

    alias: str
    sources: Mapping[str, ModelSource] = field(default_factory=dict)
    params_b: float | None = None  # billions of parameters
    layers: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    context: int | None = None
    tp: int = 1
    origin: str = "command line"
    # Thinks before it answers (DeepSeek-R1 distills): the suite then measures the time to
    # the answer apart from the time to the first token (tests/perf/test_reasoning.py).
    reasoning: bool = False

    def source(self, kinds: Iterable[str]) -> ModelSource | None:
        """The first of ``kinds`` this model has, in the order given."""
        for kind in kinds:
            if kind in self.sources:
                return self.sources[kind]
        return None

    @property
    def name(self) -> str:
        """Short name for test ids: the alias, or a path's file name."""
        if "/" in self.alias and Path(self.alias).expanduser().exists():
            return Path(self.alias).name
        return self.alias


@dataclass(frozen=True)
class Catalog:
    entries: Mapping[str, ModelEntry]

    def resolve(self, name: str, where: str, *, any_name: bool = False) -> ModelEntry:
        """The entry for ``name``; an engine's own id is taken as it is.

        ``where`` says where the name came from, for the error message.  With ``any_name``
        (a server we attach to names its models as it likes) every name is taken.
        """
        if name in self.entries:
            return self.entries[name]
        raw = _raw_entry(name)
        if raw is not None:
            return raw
        if any_name:
            return ModelEntry(name, {"hf": ModelSource("hf", name)})
        raise CatalogError(
            f"{where}: unknown model {name!r}; known aliases: {', '.join(sorted(self.entries))} "
            "(add your own under [models.ALIAS] in thresholds.toml, or give a path, an "
            "org/name Hugging Face id or an Ollama name:tag)"
        )

    def merged(self, entries: Mapping[str, ModelEntry]) -> Catalog:
        return Catalog({**self.entries, **entries})


def _raw_entry(name: str) -> ModelEntry | None:
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        return ModelEntry(name, {"gguf": ModelSource("gguf", str(path))})
    if path.is_dir():
        return ModelEntry(name, {"hf": ModelSource("hf", str(path.resolve()))})
    if "/" in name or ":" in name:
        return ModelEntry(name, {"hf": ModelSource("hf", name),
                                 "ollama": ModelSource("ollama", name)})
    return None


def parse_entry(alias: str, table: Mapping[str, Any], origin: str) -> ModelEntry:
    """Build an entry from its TOML keys (see ``catalog.toml``); raises :class:`CatalogError`
    whose message starts with the offending key."""
    sizes: dict[str, Any] = {}
    for key in _SIZE_KEYS:
        if key not in table:
            continue
        value = table[key]
        # not (value > 0) refuses NaN too; isfinite refuses an infinite size (TOML has inf).
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not (value > 0 and math.isfinite(value)):
            raise CatalogError(f"{key}: expected a positive number, got {value!r}")
        if key != "params_b" and not isinstance(value, int):
            raise CatalogError(f"{key}: expected a whole number, got {value!r}")
        sizes[key] = value
    reasoning = table.get("reasoning", False)
    if not isinstance(reasoning, bool):
        raise CatalogError(f"reasoning: expected true or false, got {reasoning!r}")
    sources: dict[str, ModelSource] = {}
    for kind in SOURCE_KINDS:
        if kind in table:
            sources[kind] = _parse_source(kind, table[kind])
    if not sources:
        raise CatalogError(
            f"{alias}: a catalogue entry needs at least one source: "
            f"{', '.join(k + ' = {{ id = ... }}' for k in SOURCE_KINDS)}"
        )
    return ModelEntry(alias, sources, origin=origin, reasoning=reasoning, **sizes)


def _parse_source(kind: str, value: Any) -> ModelSource:
    if isinstance(value, str):
        value = {"id": value}
    if not isinstance(value, dict):
        raise CatalogError(f"{kind}: expected {{ id = \"...\", bits = N }} or a string")
    unknown = sorted(set(value) - set(_SOURCE_KEYS))
    if unknown:
        raise CatalogError(f"{kind}: unknown key {unknown[0]!r}; valid: {', '.join(_SOURCE_KEYS)}")
    ident = value.get("id")
    if not isinstance(ident, str) or not ident.strip():
        raise CatalogError(f"{kind}: id must be a non-empty string")
    bits = value.get("bits")
    if bits is not None and (isinstance(bits, bool) or not isinstance(bits, (int, float))
                             or not 1 <= bits <= 32):
        raise CatalogError(f"{kind}: bits must be a number from 1 to 32, got {bits!r}")
    quantization = value.get("quantization")
    if quantization is not None and not isinstance(quantization, str):
        raise CatalogError(f"{kind}: quantization must be a string")
    return ModelSource(kind, ident.strip(), quantization, None if bits is None else float(bits))


def builtin_catalog() -> Catalog:
    """The catalogue shipped with the plugin."""
    text = importlib.resources.files("pytest_llmperf.engines").joinpath("catalog.toml").read_text(
        encoding="utf-8")
    data = tomllib.loads(text)
    return Catalog({
        alias: parse_entry(alias, table, f"built-in catalogue ({alias})")
        for alias, table in data["models"].items()
    })


# --- entries written in thresholds.toml ----------------------------------------------------


def catalog_for(thresholds: Thresholds | None) -> Catalog:
    """The shipped catalogue with thresholds.toml's own entries over it."""
    catalog = builtin_catalog()
    return catalog if thresholds is None else catalog.merged(entries_from_thresholds(thresholds))


def entries_from_thresholds(thresholds: Thresholds) -> dict[str, ModelEntry]:
    """Catalogue entries of thresholds.toml's [models.ALIAS] tables (those with more than
    ``slo``) and of the file its top-level ``catalog = "models.toml"`` names; errors raise
    :class:`ThresholdError` with file:line."""
    document = thresholds.document
    if document is None:
        return {}
    entries = _catalog_file(document.data.get("catalog"), document.path, document.locate)
    entries.update(_models(document.data.get("models", {}), document.locate))
    return entries


def _catalog_file(value: Any, path: Path, locator: Locator) -> dict[str, ModelEntry]:
    """Entries of the file named by ``catalog = "models.toml"`` (relative to this file)."""
    if value is None:
        return {}
    if not isinstance(value, str) or not value.strip():
        raise ThresholdError(f"{locator.key('catalog')}: catalog must name a TOML file")
    file = (path.parent / value).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ThresholdError(
            f"{locator.key('catalog')}: cannot read catalogue file {file}: {exc.strerror}"
        ) from None
    document = parse_toml(text, file)
    data, inner = document.data, document.locate
    unknown = sorted(set(data) - {"models"})
    if unknown:
        raise ThresholdError(f"{inner.table(unknown[0])}: unknown table [{unknown[0]}] in a "
                             "catalogue file; valid: [models.ALIAS]")
    for alias, table in data.get("models", {}).items():
        if isinstance(table, dict) and "slo" in table:
            raise ThresholdError(f"{inner.key('slo', after=f'models.{alias}')}: SLOs belong in "
                                 "thresholds.toml, not in a catalogue file")
    return _models(data.get("models", {}), inner)


def _models(tables: Any, locator: Locator) -> dict[str, ModelEntry]:
    """Catalogue entries among the [models.ALIAS] tables (those with more than ``slo``)."""
    entries: dict[str, ModelEntry] = {}
    if not isinstance(tables, dict):
        return entries
    for alias, table in tables.items():
        where = f"models.{alias}"
        if not isinstance(table, dict):
            raise ThresholdError(f"{locator.table(where)}: [{where}] must be a table")
        unknown = sorted(set(table) - {"slo", *ENTRY_KEYS})
        if unknown:
            raise ThresholdError(
                f"{locator.key(unknown[0], after=where)}: unknown key {unknown[0]!r} in "
                f"[{where}]; valid: {', '.join(sorted({'slo', *ENTRY_KEYS}))}")
        keys = {key: value for key, value in table.items() if key in ENTRY_KEYS}
        if not keys:
            continue
        try:
            entries[alias] = parse_entry(alias, keys, locator.table(where))
        except CatalogError as exc:
            key = str(exc).split(":", 1)[0]
            place = locator.key(key, after=where) if key in ENTRY_KEYS else locator.table(where)
            raise ThresholdError(f"{place}: [{where}] {exc}") from None
    return entries
