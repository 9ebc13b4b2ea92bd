"""Opening a :class:`~pytest_llmperf.bench.bench.Bench` without pytest: settings, the matrix
cell, the launched (or attached) server, its telemetry and its prompts.

```python
from pytest_llmperf.bench import serve
from pytest_llmperf.settings import settings_from

settings = settings_from(requests=16, users=[1, 2])
with serve(settings) as bench:                # llamacpp serving smollm2-135m: the defaults
    window = bench.window(users=2)
    print(window.metrics.value("tpot_ms", "p95"), bench.judge(window, checks))
```

Everything started is stopped when the ``with`` block ends, also on an error or Ctrl+C.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pytest_llmperf.bench.bench import Bench, Unsupported
from pytest_llmperf.engines.supervise import Supervisor
from pytest_llmperf.settings.groups import Settings

if TYPE_CHECKING:
    from pytest_llmperf.engines.base import ServedModel
    from pytest_llmperf.engines.matrix import Target
    from pytest_llmperf.observe.telemetry import Telemetry
    from pytest_llmperf.prompts.builtin import PromptSource
    from pytest_llmperf.results.thresholds import Thresholds

__all__ = ["open_bench", "serve", "target_of"]


def target_of(settings: Settings, backend: str | None = None, model: str | None = None,
              thresholds: Thresholds | None = None) -> Target:
    """The matrix cell of ``backend`` and ``model`` (default: the first of the settings'),
    checked: a missing engine or model file raises ValueError, a cell the engine cannot load
    :class:`Unsupported`."""
    import dataclasses

    from pytest_llmperf.engines.catalog import catalog_for
    from pytest_llmperf.engines.matrix import targets

    chosen = dataclasses.replace(settings, backends=(backend or settings.backends[0],),
                                 models=(model or settings.models[0],))
    (target,) = targets(chosen, catalog_for(thresholds))
    if target.skip:
        raise Unsupported(target.skip)
    return target


def open_bench(served: ServedModel, prompts: PromptSource, telemetry: Telemetry | None,
               settings: Settings, progress: Callable[[str], None] | None = None) -> Bench:
    """A bench on a served model (the fixtures open theirs here too)."""
    supervisor = Supervisor(served, on_restart=telemetry.follow if telemetry else None)
    return Bench(supervisor, prompts, telemetry, settings.load, settings.search,
                 settings.checks, progress)


@contextlib.contextmanager
def serve(settings: Settings, *, backend: str | None = None, model: str | None = None,
          progress: Callable[[str], None] | None = print) -> Iterator[Bench]:
    """Launch (or attach to) ``backend`` serving ``model`` and measure it with the bench this
    yields; the server, its telemetry and every process are gone when the block ends."""
    from pytest_llmperf.engines.base import get_backend
    from pytest_llmperf.engines.lifecycle import set_progress_reporter
    from pytest_llmperf.observe.telemetry import Telemetry
    from pytest_llmperf.prompts.dataset_spec import parse_dataset
    from pytest_llmperf.prompts.sources import prompt_source
    from pytest_llmperf.results.thresholds import thresholds_at

    target = target_of(settings, backend, model, thresholds_at(settings.checks.thresholds))
    spec = (parse_dataset(settings.load.dataset, seed=settings.load.seed,
                          trace_speed=settings.load.trace_speed,
                          trace_window=settings.load.trace_window)
            if settings.load.dataset else None)
    set_progress_reporter(progress)
    engine = get_backend(target.backend)
    with engine.serve(settings.server, target.entry, settings.server.output_dir) as launched, \
            Telemetry.for_served(launched, interval_s=settings.load.telemetry_interval,
                                 dcgm_urls=settings.server.dcgm_urls) as telemetry:
        served = launched.with_api(settings.load.endpoint)  # type: ignore[arg-type]
        telemetry.baseline()  # idle readings before the first load
        yield open_bench(served, prompt_source(spec, served, settings.load.seed), telemetry,
                         settings, progress)
