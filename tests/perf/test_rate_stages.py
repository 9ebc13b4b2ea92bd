"""Staged and ramped request rates: one schedule of arrivals whose rate steps or ramps stage by
stage (``--llmperf-rate-stages 1:60,1..4:30,4:120``: RATE:SECONDS, FROM..TO:SECONDS for a
linear ramp), with no pause or drain between stages.  Each stage is a window of its own (the
requests scheduled in it, what telemetry and the engine's metrics saw over it), held to the
SLOs: the stage at which latency gives way is the answer.  A stage the server cannot sustain
fails as overloaded.

Runs when --llmperf-rate-stages is given (a staged run is minutes long by nature); a test of
your own passes its stages to ``llmperf_stages("0.5:30,1:30")``.
"""

from __future__ import annotations

import pytest

from pytest_llmperf import Settings, SLOChecker, StagesFunction, Target


def test_rate_stages(llmperf_target: Target, llmperf_stages: StagesFunction,
                     llmperf_slo: SLOChecker, llmperf_settings: Settings) -> None:
    if not llmperf_settings.load.rate_stages:
        pytest.skip("no --llmperf-rate-stages given (e.g. --llmperf-rate-stages "
                    "0.5:60,0.5..2:60,2:60)")
    result = llmperf_stages()
    llmperf_slo.check(result)
