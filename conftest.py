"""Repository-level wiring for the plugin's own tests (not needed by users)."""

from pathlib import Path

# numpy (the statistics) cannot be imported twice in one process, and pytester's in-process
# runs drop the modules they imported when they end: load it once here, before any of them.
import numpy  # noqa: F401
import pytest

pytest_plugins = ["pytester"]

SUITE = Path(__file__).parent / "tests" / "perf"
# The shipped suite's searches, open loops, long-prompt and one-user tests take minutes on 2 CPU
# cores (the one-user window alone about 110 s on a slow day), and its 4-user window, sized by
# its p95 SLOs, 63-77 s.  The repository's own default run (`pytest`) leaves them all to
# `pytest -m slow`, as it does the stub runs, to stay under 10 minutes (it read 663 s with the
# 4-user window on 2026-12-07); `pytest tests/perf` (the suite as a user runs it) runs them all.
SLOW_IN_THE_SELF_TEST = frozenset({"test_capacity_users", "test_capacity_rate",
                                   "test_sweep_users", "test_request_rate", "test_prefill",
                                   "test_prefix_cache", "test_single_user_latency",
                                   "test_trace", "test_structured_output",
                                   "test_embeddings", "test_concurrent_users"})


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _only_the_suite(config):
        return
    for item in items:
        name = getattr(item, "originalname", item.name)
        if Path(item.path).is_relative_to(SUITE) and name in SLOW_IN_THE_SELF_TEST:
            item.add_marker(pytest.mark.slow)


def _only_the_suite(config: pytest.Config) -> bool:
    paths = [Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
             for arg in config.args]
    return bool(paths) and all(path.is_relative_to(SUITE.resolve()) for path in paths)
