"""Offline batches on the in-process transformers engine: B prompts submitted at once run as
one generate() call of batch B, and the output tokens/s of batch 1, 8, 16, 32 and 64 show
what batching buys on this hardware (sizes above --llmperf-max-num-seqs are left out: the
engine would split them).  A server batches on its own; for servers, test_sweep_users is the
curve, so this test skips them.
"""

from __future__ import annotations

import pytest

from pytest_llmperf import Settings, SweepFunction, Target

BATCHES = (1, 8, 16, 32, 64)


def test_offline_batch(llmperf_target: Target, llmperf_sweep: SweepFunction,
                       llmperf_settings: Settings) -> None:
    if llmperf_target.backend != "transformers":
        pytest.skip("offline batches are the in-process transformers engine's; a server "
                    "batches requests on its own (see test_sweep_users)")
    sizes = [size for size in BATCHES if size <= llmperf_settings.server.max_num_seqs]
    # B users sending one request each: all B reach the engine together, as one batch.
    sweep = llmperf_sweep(users=sizes, requests=sizes)
    for size, point in zip(sizes, sweep.points, strict=True):
        failed = [r.error for r in point.run.records if not r.ok]
        assert not failed, f"batch {size}: {len(failed)} failed, first: {failed[0]}"
