"""The library under the pytest layer: measure a served model without pytest.

:func:`~pytest_llmperf.bench.serve.serve` opens a :class:`~pytest_llmperf.bench.bench.Bench`
from settings; the bench runs windows, sweeps, capacity searches, prefill sweeps and the
prefix-cache check, keeps the server alive, and holds results to SLOs.
"""

from __future__ import annotations

from pytest_llmperf.bench.bench import Bench, Unsupported
from pytest_llmperf.bench.serve import open_bench, serve

__all__ = ["Bench", "Unsupported", "open_bench", "serve"]
