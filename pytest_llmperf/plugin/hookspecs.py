"""Hooks a conftest.py or plugin can implement to extend what a run records.

```python
def pytest_llmperf_fingerprint(config, fingerprint):
    fingerprint["rack"] = "b12"            # saved with the run (not compared)

def pytest_llmperf_result_document(config, document, extra):
    extra["ci_job"] = os.environ.get("CI_JOB_ID")   # document: the RunDocument, to read
```
Both run once per session, on the process that writes the reports (pytest-xdist's controller);
the fingerprint hook also runs once on each other host of a session over several hosts
(plugin.hosts), for that host's fingerprint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_llmperf.store.documents import RunDocument

__all__ = ["pytest_llmperf_fingerprint", "pytest_llmperf_result_document"]


@pytest.hookspec
def pytest_llmperf_fingerprint(config: pytest.Config, fingerprint: dict[str, object]) -> None:
    """Add to (or change) the machine fingerprint saved with the run: ``fingerprint`` holds
    the hardware and software facts (``cpu_model``, ``gpu_models``, ``gpu_driver``, ``cuda``,
    ``git_commit``, ...).  Values must be JSON values.  A baseline on other hardware is refused
    by the facts of ``store.compare.HARDWARE_KEYS``; added keys are kept, not compared."""


@pytest.hookspec
def pytest_llmperf_result_document(config: pytest.Config, document: RunDocument,
                                   extra: dict[str, object]) -> None:
    """Add to the run's result document before it is written (results.json, --llmperf-json and
    saved runs): put your fields in ``extra`` (JSON values); they are written under the
    document's ``extra`` key and read back as ``RunDocument.extra``.  ``document`` is what is
    about to be written (read it, do not change it)."""
