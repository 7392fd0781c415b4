"""containerd's filter language, used by every List call.

Syntax: a filter is comma-separated conditions that must all hold; a list of filters matches
when any one matches (an empty list matches everything). A condition is a field path,
optionally followed by an operator and a value::

    labels."io.example/a"==b,name~=^alpine
    type==io.containerd.grpc.v1
    labels.gc              (present and non-empty)

Field paths are dot-separated; a component may be double-quoted to contain dots. Operators:
``==`` equal, ``!=`` not equal, ``~=`` regular expression search. Values may be bare (up to
the next comma) or quoted with ``"``. Errors are :class:`InvalidArgument` naming the position.

Regular expressions are RE2's, as Go's ``regexp`` that containerd uses: matching takes time
linear in the input, so a client's pattern cannot stall the daemon (Python's backtracking ``re``
needs minutes for ``(x+x+)+y`` against 30 x's), and syntax RE2 lacks (back-references,
look-around) is refused as containerd refuses it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import re2

from pycontainerd.errdefs import InvalidArgument

Adaptor = Callable[[Sequence[str]], "str | None"]
"""Returns the value at a field path, or None when the object has no such field."""

_FIELD = re.compile(r"[A-Za-z0-9_\-/]+")
_OPERATORS = ("==", "!=", "~=")


class Regex(Protocol):
    """A compiled pattern (RE2)."""

    def search(self, text: str) -> object | None:
        """A match object, or None."""
        ...


def _re2_options() -> object:
    options = re2.Options()
    options.log_errors = False  # a client's bad pattern is its error, not a line in our log
    return options


_RE2_OPTIONS = _re2_options()


def compile_regex(pattern: str) -> Regex:
    """Compile a filter's pattern with RE2; InvalidArgument when RE2 cannot parse it."""
    try:
        compiled: Regex = re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise InvalidArgument(f"filters: invalid regular expression {pattern!r}: {reason}") from exc
    return compiled


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``path op value`` term; ``op`` is empty for a presence test."""

    path: tuple[str, ...]
    op: str = ""
    value: str = ""
    regex: Regex | None = None

    def match(self, adaptor: Adaptor) -> bool:
        """Whether the object behind ``adaptor`` satisfies this condition."""
        found = adaptor(self.path)
        if not self.op:
            return bool(found)
        if found is None:
            return self.op == "!="
        if self.op == "==":
            return found == self.value
        if self.op == "!=":
            return found != self.value
        assert self.regex is not None
        return self.regex.search(found) is not None


@dataclass(frozen=True, slots=True)
class Filter:
    """Conditions that must all match."""

    conditions: tuple[Condition, ...]

    def match(self, adaptor: Adaptor) -> bool:
        """Whether every condition matches."""
        return all(c.match(adaptor) for c in self.conditions)


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, what: str) -> InvalidArgument:
        return InvalidArgument(f"filters: {what} at position {self.pos} in {self.text!r}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self, s: str) -> bool:
        return self.text.startswith(s, self.pos)

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def quoted(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\" and self.pos + 1 < len(self.text):
                nxt = self.text[self.pos + 1]
                out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
                self.pos += 2
                continue
            if ch == quote:
                self.pos += 1
                return "".join(out)
            out.append(ch)
            self.pos += 1
        raise self.error("unterminated quoted string")

    def field(self) -> str:
        if self.peek('"'):
            return self.quoted()
        m = _FIELD.match(self.text, self.pos)
        if not m:
            raise self.error("expected field name")
        self.pos = m.end()
        return m.group()

    def value(self) -> str:
        self.skip_space()
        if self.peek('"'):
            return self.quoted()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] != ",":
            self.pos += 1
        value = self.text[start : self.pos].strip()
        if not value:
            raise self.error("expected value")
        return value


def parse(text: str) -> Filter:
    """Parse one filter string."""
    sc = _Scanner(text)
    conditions: list[Condition] = []
    while True:
        sc.skip_space()
        path = [sc.field()]
        while sc.peek("."):
            sc.pos += 1
            path.append(sc.field())
        sc.skip_space()
        op = next((o for o in _OPERATORS if sc.peek(o)), "")
        value = ""
        regex = None
        if op:
            sc.pos += len(op)
            value = sc.value()
            if op == "~=":
                regex = compile_regex(value)
        conditions.append(Condition(tuple(path), op, value, regex))
        sc.skip_space()
        if sc.done():
            return Filter(tuple(conditions))
        if not sc.peek(","):
            raise sc.error("expected , or operator")
        sc.pos += 1


def parse_all(texts: Iterable[str]) -> list[Filter]:
    """Parse every filter string (empty strings are ignored)."""
    return [parse(t) for t in texts if t.strip()]


def match_any(filters: Sequence[Filter], adaptor: Adaptor) -> bool:
    """True when ``filters`` is empty or any filter matches."""
    return not filters or any(f.match(adaptor) for f in filters)


def label_adaptor(labels: dict[str, str], path: Sequence[str]) -> str | None:
    """Resolve ``labels.<key>`` paths (the key may itself contain dots when unquoted)."""
    if len(path) < 2:
        return None
    return labels.get(".".join(path[1:]))
