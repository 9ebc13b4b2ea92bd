"""junit XML properties of one measured window (``ttft_ms.p95``, ``server.*``, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["result_properties"]

_OPEN_LOOP_ONLY = ("schedule_slip_ms", "ttft_from_schedule_ms", "e2el_from_schedule_ms")


def result_properties(entry: Mapping[str, Any]) -> list[tuple[str, object]]:
    """junit properties of a window's entry (``report.entry.result_entry``): ``ttft_ms.p95``
    ... and the whole-run numbers."""
    props: list[tuple[str, object]] = [
        ("target", f"{entry['backend']}-{entry['model']}"),
        ("engine", entry["engine"]),
        ("users", entry["users"]),
        ("load", entry["load"].get("label")),
        *((("overload", entry["overload"]),) if entry.get("overload") else ()),
        ("token_source", ",".join(entry["token_sources"])),
        ("short_answers", entry["short_answers"]),
        ("approximate_counts", entry["approximate_counts"]),
        ("resent", entry["resent"]),
        *((f"prompts.{key}", value) for key, value in entry["prompts"].items()),
    ]
    for name, stats in entry["distributions"].items():
        if name in _OPEN_LOOP_ONLY and stats.get("mean") is None:
            continue  # a closed loop schedules nothing
        props.extend((f"{name}.{stat}", value) for stat, value in stats.items())
    props.extend(entry["scalars"].items())
    health = entry.get("health") or {}
    props.extend((f"health.{name}", value) for name, value in health.items()
                 if isinstance(value, (int, float)))
    props.extend((f"validity.{mark}", "; ".join(crossed))
                 for mark, crossed in (entry.get("validity") or {}).items())
    props.extend((f"server.{name}", value)
                 for name, value in (entry["server_metrics"] or {}).items())
    resources = entry["resources"] or {}
    props.extend((f"resources.{name}", value)
                 for name, value in resources.get("metrics", {}).items())
    if resources.get("gpu_unavailable_reason"):
        props.append(("resources.gpu_unavailable_reason", resources["gpu_unavailable_reason"]))
    return props

