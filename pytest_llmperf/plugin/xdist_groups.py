"""pytest-xdist: keep every test of one matrix target on one worker under ``--dist loadgroup``.

Each target's tests carry ``xdist_group(target id)``, which is what pytest-xdist's own
loadgroup scheduler reads, by appending ``@group`` to node ids on the workers.  pytest 9.2
stopped honouring that node-id rewrite (pytest-xdist issue #1386), and tests of one target then
spread over workers: each would start its own server on the same GPUs.  This scheduler groups by
the target id found in the node id instead, so it works with every pytest release.  Registered
only when pytest-xdist is active (its hook is unknown otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

__all__ = ["TargetGroupPlugin", "target_of"]


def target_of(nodeid: str, target_ids: Sequence[str]) -> str | None:
    """The matrix target a test belongs to: the longest target id inside its ``[...]``."""
    start = nodeid.find("[")
    if start < 0:
        return None
    params = nodeid[start + 1:nodeid.rfind("]")]
    pieces = params.split("-")
    found = [t for t in target_ids if t == params or _contains_id(pieces, t.split("-"))]
    return max(found, key=len) if found else None


def _contains_id(pieces: list[str], target: list[str]) -> bool:
    """``target`` as consecutive ``-``-separated pieces of the parameter id."""
    return any(pieces[i:i + len(target)] == target for i in range(len(pieces) - len(target) + 1))


class TargetGroupPlugin:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getvalue("dist") != "loadgroup":
            return None
        from xdist.scheduler import LoadGroupScheduling

        from pytest_llmperf.plugin.session import target_ids as matrix_ids

        target_ids = matrix_ids(config)  # only now: a session without perf tests pays nothing

        class TargetScheduling(LoadGroupScheduling):  # type: ignore[misc]
            def _split_scope(self, nodeid: str) -> str:
                return target_of(nodeid, target_ids) or str(super()._split_scope(nodeid))

        return TargetScheduling(config, log)
