"""Fuzzing the small parsers every request goes through: image references, filters (and their
regular expressions, which must not take time exponential in the input), identifiers, labels
and platforms. Each accepts or raises InvalidArgument, quickly; what it accepts round-trips."""

from __future__ import annotations

import time

from hypothesis import assume, given
from hypothesis import strategies as st

from pycontainerd import filters, identifiers, labels
from pycontainerd.errdefs import InvalidArgument
from pycontainerd.remotes.reference import familiar_name, parse_reference
from tests.fuzz.budget import count, fuzz_settings

# Characters references, filters and identifiers give meaning to, plus anything at all.
SPECIAL = st.sampled_from([*'abcxyzAZ019._-/:@=!~,"\\ ()[]{}+*?^$|\n\t\0é', "sha256:", "a" * 64, "=="])
TEXT = st.one_of(st.text(max_size=80), st.lists(SPECIAL, max_size=40).map("".join))

COMPONENT = st.from_regex(r"[a-z0-9]+([._-][a-z0-9]+){0,2}", fullmatch=True)
DOMAINS = st.sampled_from(["", "docker.io/", "localhost:5000/", "127.0.0.1:5000/", "ghcr.io/", "[::1]:5000/"])
TAGS = st.one_of(st.just(""), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True))
DIGESTS = st.one_of(st.just(""), st.from_regex(r"sha256:[a-f0-9]{64}", fullmatch=True))
REFERENCES = st.builds(
    lambda domain, path, tag, digest: (
        f"{domain}{'/'.join(path)}{':' + tag if tag else ''}{'@' + digest if digest else ''}"
    ),
    DOMAINS,
    st.lists(COMPONENT, min_size=1, max_size=3),
    TAGS,
    DIGESTS,
)
SLOW = 1.0  # seconds: far above what any of these parsers needs for inputs of this size


def timed(fn: object, *args: object) -> object:
    started = time.monotonic()
    try:
        return fn(*args)  # type: ignore[operator]
    finally:
        assert time.monotonic() - started < SLOW, f"{fn} took too long on {args!r}"


@fuzz_settings(1000)
@given(value=st.one_of(TEXT, REFERENCES))
def test_references_parse_or_fail_cleanly(value: str) -> None:
    count("reference: strings")
    try:
        ref = timed(parse_reference, value)
    except InvalidArgument:
        return
    # What was accepted prints as a reference that parses to the same thing.
    assert parse_reference(str(ref)) == ref
    familiar_name(ref)  # type: ignore[arg-type]


@fuzz_settings(300)
@given(domain=DOMAINS, path=st.lists(COMPONENT, min_size=1, max_size=3), tag=TAGS, digest=DIGESTS)
def test_well_formed_references_are_accepted(domain: str, path: list[str], tag: str, digest: str) -> None:
    assume(domain or len(path) == 1 or "." not in path[0])  # else the first component is the domain
    count("reference: well-formed")
    value = f"{domain}{'/'.join(path)}{':' + tag if tag else ''}{'@' + digest if digest else ''}"
    ref = parse_reference(value)
    assert ref.path.endswith("/".join(path))
    assert ref.digest == digest
    assert ref.tag == (tag or ("" if digest else "latest"))


LABELS = st.dictionaries(st.sampled_from(["a", "b", "x.y", "io.example/k"]), st.text(max_size=40), max_size=3)


@fuzz_settings(1000)
@given(text=TEXT, object_labels=LABELS)
def test_filters_parse_and_match_or_fail_cleanly(text: str, object_labels: dict[str, str]) -> None:
    count("filters: strings")
    try:
        parsed = timed(filters.parse, text)
    except InvalidArgument:
        return
    values = {"name": "n", "id": "i", **{f"labels.{k}": v for k, v in object_labels.items()}}

    def adaptor(path: object) -> str | None:
        return values.get(".".join(path))  # type: ignore[arg-type]

    timed(parsed.match, adaptor)


# Patterns that take exponential time in a backtracking engine, against inputs that make them.
CATASTROPHIC = [
    (r"(x+x+)+y", "x" * 40),
    (r"(a|a)*b", "a" * 40),
    (r"^(a*)*b$", "a" * 5000 + "!"),
    (r"^(\w+\s?)*$", "w" * 40 + "!"),
]


@fuzz_settings(50)
@given(case=st.sampled_from(CATASTROPHIC), quoted=st.booleans())
def test_filter_regexes_take_linear_time(case: tuple[str, str], quoted: bool) -> None:
    pattern, victim = case
    count("filters: catastrophic regexes")
    value = '"' + pattern.replace("\\", "\\\\") + '"' if quoted else pattern
    parsed = filters.parse(f"labels.k~={value}")
    started = time.monotonic()
    assert not parsed.match(lambda path: victim)
    assert time.monotonic() - started < SLOW


@fuzz_settings(500)
@given(value=TEXT)
def test_identifiers_validate_or_fail_cleanly(value: str) -> None:
    count("identifiers: strings")
    try:
        assert identifiers.validate(value) == value
    except InvalidArgument:
        return
    assert len(value) <= identifiers.MAX_LENGTH
    assert "/" not in value and ".." not in value and "\0" not in value


@fuzz_settings(300)
@given(key=TEXT, value=st.one_of(TEXT, st.text(min_size=4000, max_size=5000)))
def test_labels_validate_or_fail_cleanly(key: str, value: str) -> None:
    count("labels: key/value pairs")
    try:
        labels.validate(key, value)
    except InvalidArgument:
        pass
