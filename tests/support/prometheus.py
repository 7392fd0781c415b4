"""A strict parser of Prometheus' text exposition format (0.0.4), for tests."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)$")
_LABEL = re.compile(rf'({_NAME})="((?:[^"\\]|\\.)*)"(?:,|$)')


@dataclass
class Family:
    name: str
    kind: str = "untyped"
    help: str = ""
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def parse(text: str) -> dict[str, Family]:
    """Families by name; AssertionError on any malformed line."""
    families: dict[str, Family] = {}
    current: Family | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            current = families.setdefault(name, Family(name))
            current.help = help_text
            continue
        if line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), f"line {number}: type {kind}"
            current = families.setdefault(name, Family(name))
            current.kind = kind
            continue
        if line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"line {number} is not a sample: {line!r}"
        name, raw_labels, raw_value = match.groups()
        labels: dict[str, str] = {}
        if raw_labels:
            pos = 0
            while pos < len(raw_labels):
                m = _LABEL.match(raw_labels, pos)
                assert m, f"line {number}: bad labels {raw_labels!r}"
                labels[m.group(1)] = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1), m.group(2))
                pos = m.end()
        value = float(raw_value.replace("+Inf", "inf").replace("-Inf", "-inf"))
        assert current is not None and name.startswith(current.name), f"line {number}: {name} outside its family"
        current.samples.append((name, labels, value))
    return families
