"""junit XML properties of one measured window (``ttft_ms.p95``, ``server.*``, ...)."""

from __future__ import annotations

import math

from pytest_llmperf.results.image_sizes import image_size_figures
from pytest_llmperf.results.jsonfields import rounded
from pytest_llmperf.results.metrics import REPORTED_STATISTICS, SCALARS
from pytest_llmperf.results.window import WindowResult

__all__ = ["junit_value", "window_properties"]

_OPEN_LOOP_ONLY = ("schedule_slip_ms", "ttft_from_schedule_ms", "e2el_from_schedule_ms")


def window_properties(window: WindowResult) -> list[tuple[str, object]]:
    """``target``, ``ttft_ms.p95`` ... and the whole-run numbers, the client's health, the
    engine's own numbers and the resources.  A figure the window could not know (reasoning
    tokens nothing counted, a TPOT of one-token answers) is left out: junit would write the
    text ``None`` where its readers expect a number (the markdown report says why); so is an
    infinite or NaN one (the text ``inf``, ``nan``)."""
    return [(name, value) for name, value in _properties(window) if junit_value(value)]


def junit_value(value: object) -> bool:
    """Whether ``value`` belongs in a junit property: not None, not an infinite or NaN float
    (junit writes them as text where its readers expect a number; the JSON documents and the
    markdown report keep them)."""
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def _properties(window: WindowResult) -> list[tuple[str, object]]:
    prompts = window.prompts
    props: list[tuple[str, object]] = [
        ("target", window.served.target),
        ("engine", window.served.engine),
        ("users", window.users),
        ("load", window.shape.label),
        *((("overload", window.overload),) if window.overload else ()),
        ("token_source", ",".join(window.metrics.output_token_sources)),
        ("short_answers", window.short_answers),
        ("approximate_counts", window.approximate_counts),
        ("resent", window.resent),
        ("requests", window.requests),
        *((("window_sizing", window.sizing.describe(window.requests)),)
          if window.sizing is not None else ()),
        *((f"prompts.{key}", value) for key, value in (prompts.to_json().items()
                                                        if prompts is not None else ())),
    ]
    for name, stats in window.metrics.summary().items():
        if name in _OPEN_LOOP_ONLY and stats.get("mean") is None:
            continue  # a closed loop schedules nothing
        props.extend((f"{name}.{stat}", rounded(stats[stat])) for stat in REPORTED_STATISTICS)
    props.extend((name, rounded(value)) for name, value in window.metrics.scalars.items()
                 if name in SCALARS)
    health = window.health
    if health is not None:
        props.extend((f"health.{name}", value) for name, value in health.figures.items())
    props.extend((f"validity.{mark}", "; ".join(crossed))
                 for mark, crossed in window.validity_marks.items())
    for image in image_size_figures(window.run):  # images in chat: per image size
        props.extend((f"images[{image.size}].{name}", rounded(value)) for name, value in (
            ("ttft_ms.median", image.ttft_ms_median), ("ttft_ms.p95", image.ttft_ms_p95),
            ("input_tokens.median", image.input_tokens_median)))
    props.extend((f"server.{name}", rounded(value))
                 for name, value in (window.server_metrics or {}).items())
    resources = window.resources
    if resources is not None:
        props.extend((f"resources.{name}", value) for name, value in resources.metrics.items())
        if resources.gpu_unavailable_reason:
            props.append(("resources.gpu_unavailable_reason", resources.gpu_unavailable_reason))
    return props
