"""pytest-llmperf: performance tests for LLM inference servers, as a pytest plugin and a library.

The names below are the public API, usable without pytest (``serve`` opens a
:class:`Bench` on a served model; see docs/writing-tests.md, "Without pytest").  Importing this
package loads only light, pure-Python modules: the names whose modules need the client stack,
NVML or numpy (``Bench``, ``serve``, the recorded results and the store) are loaded when first
used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from pytest_llmperf.clients.base import Prompt
from pytest_llmperf.engines.matrix import Target
from pytest_llmperf.prompts.builtin import BuiltinPrompts, PromptSource
from pytest_llmperf.prompts.files import FilePrompts
from pytest_llmperf.prompts.shared_prefix import SharedPrefixPrompts
from pytest_llmperf.prompts.synthetic import Lengths, RandomPrompts
from pytest_llmperf.results.capacity import CapacityResult, ProbeOutcome
from pytest_llmperf.results.load_point import LoadPoint
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.metrics import RunMetrics, summarize
from pytest_llmperf.results.prefix_cache import PrefixCacheResult
from pytest_llmperf.results.rate_stages import RateStage
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource
from pytest_llmperf.results.slo import Verdict, evaluate
from pytest_llmperf.results.sweep import SweepResult
from pytest_llmperf.results.thresholds import (
    Check,
    ThresholdError,
    Thresholds,
    load_thresholds,
    parse_check,
)
from pytest_llmperf.results.window import WindowResult
from pytest_llmperf.settings.groups import SettingError, Settings
from pytest_llmperf.settings.resolve import settings_from

if TYPE_CHECKING:
    from pytest_llmperf.bench.ab import ABResult
    from pytest_llmperf.bench.bench import Bench, Unsupported
    from pytest_llmperf.bench.serve import serve
    from pytest_llmperf.engines.base import ServedModel
    from pytest_llmperf.engines.supervise import ServerDied, ServerLost
    from pytest_llmperf.plugin.ab_fixtures import ABFunction
    from pytest_llmperf.plugin.endpoint_fixtures import EmbeddingsFunction
    from pytest_llmperf.plugin.fixtures import LoadFunction
    from pytest_llmperf.plugin.prompt_fixtures import (
        PrefillFunction,
        PrefixCacheFunction,
        ReplayFunction,
    )
    from pytest_llmperf.plugin.search_fixtures import (
        CapacityFunction,
        StagesFunction,
        SweepFunction,
    )
    from pytest_llmperf.plugin.slo_check import SLOChecker
    from pytest_llmperf.results.comparison import Comparison
    from pytest_llmperf.results.recorded import (
        RecordedCapacity,
        RecordedPrefixCache,
        RecordedSweep,
        RecordedWindow,
    )
    from pytest_llmperf.store.documents import RunDocument, load_run

# Loaded on first use: name -> module.
_LAZY = {
    "ABResult": "pytest_llmperf.bench.ab",
    "ABFunction": "pytest_llmperf.plugin.ab_fixtures",
    "EmbeddingsFunction": "pytest_llmperf.plugin.endpoint_fixtures",
    "Bench": "pytest_llmperf.bench.bench",
    "Unsupported": "pytest_llmperf.bench.bench",
    "serve": "pytest_llmperf.bench.serve",
    "ServedModel": "pytest_llmperf.engines.base",
    "ServerDied": "pytest_llmperf.engines.supervise",
    "ServerLost": "pytest_llmperf.engines.supervise",
    "LoadFunction": "pytest_llmperf.plugin.fixtures",
    "PrefillFunction": "pytest_llmperf.plugin.prompt_fixtures",
    "PrefixCacheFunction": "pytest_llmperf.plugin.prompt_fixtures",
    "ReplayFunction": "pytest_llmperf.plugin.prompt_fixtures",
    "CapacityFunction": "pytest_llmperf.plugin.search_fixtures",
    "StagesFunction": "pytest_llmperf.plugin.search_fixtures",
    "SweepFunction": "pytest_llmperf.plugin.search_fixtures",
    "SLOChecker": "pytest_llmperf.plugin.slo_check",
    "Comparison": "pytest_llmperf.results.comparison",
    "RecordedCapacity": "pytest_llmperf.results.recorded",
    "RecordedPrefixCache": "pytest_llmperf.results.recorded",
    "RecordedSweep": "pytest_llmperf.results.recorded",
    "RecordedWindow": "pytest_llmperf.results.recorded",
    "RunDocument": "pytest_llmperf.store.documents",
    "load_run": "pytest_llmperf.store.documents",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pytest_llmperf' has no attribute {name!r}")


__all__ = [
    "ABFunction",
    "ABResult",
    "Bench",
    "BuiltinPrompts",
    "CapacityFunction",
    "CapacityResult",
    "Check",
    "Comparison",
    "EmbeddingsFunction",
    "FilePrompts",
    "Lengths",
    "LoadFunction",
    "LoadPoint",
    "LoadRun",
    "LoadShape",
    "PrefillFunction",
    "PrefixCacheFunction",
    "PrefixCacheResult",
    "ProbeOutcome",
    "Prompt",
    "PromptSource",
    "RandomPrompts",
    "RateStage",
    "RecordedCapacity",
    "RecordedPrefixCache",
    "RecordedSweep",
    "RecordedWindow",
    "ReplayFunction",
    "RequestRecord",
    "RunDocument",
    "RunMetrics",
    "SLOChecker",
    "ServedModel",
    "ServerDied",
    "ServerLost",
    "SettingError",
    "Settings",
    "SharedPrefixPrompts",
    "StagesFunction",
    "SweepFunction",
    "SweepResult",
    "Target",
    "ThresholdError",
    "Thresholds",
    "TokenSource",
    "Unsupported",
    "Verdict",
    "WindowResult",
    "evaluate",
    "load_run",
    "load_thresholds",
    "parse_check",
    "serve",
    "settings_from",
    "summarize",
]
