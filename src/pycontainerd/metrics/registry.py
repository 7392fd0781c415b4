"""Counters, gauges and histograms with labels, rendered in Prometheus' text format (0.0.4).

Deliberately small: the daemon needs a handful of families, and rendering them is a few lines;
collectors (callables run at scrape time) supply values that live elsewhere, such as object
counts read from the metadata store.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

LabelValues = tuple[str, ...]
Sample = tuple[str, dict[str, str], float]
"""(metric name with suffix, labels, value)."""

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels_text(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


class _Family:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self._lock = threading.Lock()

    def _key(self, labels: Sequence[str]) -> LabelValues:
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(labels)}")
        return tuple(labels)

    def samples(self) -> Iterable[Sample]:
        raise NotImplementedError


class Counter(_Family):
    """A value that only goes up."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, label_names)
        self._values: dict[LabelValues, float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def samples(self) -> Iterable[Sample]:
        with self._lock:
            items = list(self._values.items())
        for key, value in items:
            yield self.name, dict(zip(self.label_names, key, strict=True)), value


class Histogram(_Family):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, label_names: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> None:
        super().__init__(name, help_text, label_names)
        self.buckets = tuple(sorted(buckets))
        self._values: dict[LabelValues, tuple[list[int], float, int]] = {}

    def observe(self, value: float, *labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts, total, n = self._values.get(key, ([0] * len(self.buckets), 0.0, 0))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
            self._values[key] = (counts, total + value, n + 1)

    def samples(self) -> Iterable[Sample]:
        with self._lock:
            items = [(k, (list(c), t, n)) for k, (c, t, n) in self._values.items()]
        for key, (counts, total, n) in items:
            labels = dict(zip(self.label_names, key, strict=True))
            for bound, count in zip(self.buckets, counts, strict=True):
                yield f"{self.name}_bucket", {**labels, "le": _format_value(bound)}, count
            yield f"{self.name}_bucket", {**labels, "le": "+Inf"}, n
            yield f"{self.name}_sum", labels, total
            yield f"{self.name}_count", labels, n


class Gauge(_Family):
    """Values read at scrape time from ``collect`` (label values -> value)."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help_text: str,
        label_names: Sequence[str] = (),
        collect: Callable[[], Iterable[tuple[LabelValues, float]]] | None = None,
    ) -> None:
        super().__init__(name, help_text, label_names)
        self._collect = collect

    def samples(self) -> Iterable[Sample]:
        if self._collect is None:
            return
        for key, value in self._collect():
            yield self.name, dict(zip(self.label_names, key, strict=True)), value


class Registry:
    """The families one endpoint serves."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}

    def add(self, family: _Family) -> _Family:
        if family.name in self._families:
            raise ValueError(f"metric {family.name} registered twice")
        self._families[family.name] = family
        return family

    def render(self) -> str:
        """Every family in the text exposition format; a failing collector is skipped."""
        lines: list[str] = []
        for family in self._families.values():
            try:
                samples = list(family.samples())
            except Exception as exc:
                lines.append(f"# {family.name}: collection failed: {type(exc).__name__}")
                continue
            lines.append(f"# HELP {family.name} {family.help}")
            lines.append(f"# TYPE {family.name} {family.kind}")
            for name, labels, value in samples:
                lines.append(f"{name}{_labels_text(labels)} {_format_value(value)}")
        return "\n".join(lines) + "\n"
