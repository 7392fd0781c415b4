"""The metrics registry renders valid Prometheus text."""

from __future__ import annotations

from pycontainerd.metrics.registry import Counter, Gauge, Histogram, Registry
from tests.support.prometheus import parse


def test_counter_histogram_gauge_render() -> None:
    reg = Registry()
    c = reg.add(Counter("calls_total", "Calls.", ("method",)))
    h = reg.add(Histogram("latency_seconds", "Latency.", ("method",), buckets=(0.1, 1.0)))
    reg.add(Gauge("things", "Things.", ("kind",), lambda: [(('a"b',), 3.0)]))
    c.inc("List")  # type: ignore[attr-defined]
    c.inc("List")  # type: ignore[attr-defined]
    h.observe(0.05, "List")  # type: ignore[attr-defined]
    h.observe(0.5, "List")  # type: ignore[attr-defined]
    h.observe(5.0, "List")  # type: ignore[attr-defined]
    families = parse(reg.render())
    assert families["calls_total"].kind == "counter"
    assert families["calls_total"].samples == [("calls_total", {"method": "List"}, 2.0)]
    buckets = {s[1]["le"]: s[2] for s in families["latency_seconds"].samples if s[0].endswith("_bucket")}
    assert buckets == {"0.1": 1.0, "1": 2.0, "+Inf": 3.0}, "cumulative buckets"
    count = next(s[2] for s in families["latency_seconds"].samples if s[0] == "latency_seconds_count")
    assert count == 3.0
    assert families["things"].samples == [("things", {"kind": 'a"b'}, 3.0)]


def test_failing_collector_does_not_break_the_scrape() -> None:
    reg = Registry()

    def broken() -> list[tuple[tuple[str, ...], float]]:
        raise RuntimeError("store closed")

    reg.add(Gauge("broken", "Broken.", (), broken))
    reg.add(Gauge("fine", "Fine.", (), lambda: [((), 1.0)]))
    families = parse(reg.render())
    assert families["fine"].samples == [("fine", {}, 1.0)]
