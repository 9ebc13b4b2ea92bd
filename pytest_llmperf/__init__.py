"""pytest-llmperf: performance tests for LLM inference servers, as a pytest plugin.

The names below are the library's public API, usable without pytest.  This package imports
only light, pure-Python modules; the engine, client and NVML code load when used.
"""

from __future__ import annotations

from pytest_llmperf.clients.base import Prompt
from pytest_llmperf.load.shapes import LoadShape
from pytest_llmperf.prompts.builtin import BuiltinPrompts, PromptSource
from pytest_llmperf.prompts.files import FilePrompts
from pytest_llmperf.prompts.shared_prefix import SharedPrefixPrompts
from pytest_llmperf.prompts.synthetic import Lengths, RandomPrompts
from pytest_llmperf.results.metrics import RunMetrics, summarize
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource
from pytest_llmperf.results.slo import Verdict, evaluate
from pytest_llmperf.results.thresholds import Check, ThresholdError, Thresholds, load_thresholds

__all__ = [
    "BuiltinPrompts",
    "Check",
    "FilePrompts",
    "Lengths",
    "LoadRun",
    "LoadShape",
    "Prompt",
    "PromptSource",
    "RandomPrompts",
    "RequestRecord",
    "RunMetrics",
    "SharedPrefixPrompts",
    "ThresholdError",
    "Thresholds",
    "TokenSource",
    "Verdict",
    "evaluate",
    "load_thresholds",
    "summarize",
]
