"""Shared measuring and reporting for the benchmarks: figures, targets, tables, JSON."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from collections.abc import Sequence


@attrs.frozen
class Figure:
    """One measured figure, with its target when it has one.

    Attributes:
        name: What was measured.
        value: The measured value (median where repeated).
        unit: Its unit.
        spread: ``(min, max)`` over the repeats, when repeated.
        target: The target, in words ("<= 2x floor"), if any.
        met: Whether the target was met (None without a target).
    """

    name: str
    value: float
    unit: str
    spread: tuple[float, float] | None = None
    target: str | None = None
    met: bool | None = None


@attrs.frozen
class Section:
    """The figures of one benchmark."""

    title: str
    figures: list[Figure]
    notes: list[str] = attrs.Factory(list)


def median_spread(samples: Sequence[float]) -> tuple[float, tuple[float, float]]:
    """The median of ``samples`` and their ``(min, max)``."""
    return statistics.median(samples), (min(samples), max(samples))


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``samples``, nearest rank."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def _fmt(value: float) -> str:
    if value == 0 or 0.01 <= abs(value) < 100_000:
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{value:,.3g}"


def render(section: Section) -> str:
    """A plain-text table of one section."""
    rows = [("figure", "value", "spread (min..max)", "target", "met")]
    for f in section.figures:
        spread = f"{_fmt(f.spread[0])}..{_fmt(f.spread[1])}" if f.spread else ""
        met = "" if f.met is None else ("yes" if f.met else "NO")
        rows.append((f.name, f"{_fmt(f.value)} {f.unit}", spread, f.target or "", met))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [f"## {section.title}", ""]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [f"  {note}" for note in section.notes]
    return "\n".join(lines) + "\n"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next(
                (
                    line.split(":", 1)[1].strip()
                    for line in cpuinfo
                    if line.startswith("model name")
                ),
                model,
            )
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": model,
        "cpus": os.cpu_count(),
    }


def as_json(sections: Sequence[Section]) -> dict[str, Any]:
    """All sections as a JSON-ready dict, with the machine."""
    return {
        "machine": machine(),
        "sections": [attrs.asdict(section) for section in sections],
    }
