from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pycontainerd import filters
from pycontainerd.errdefs import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Sequence

OBJ = {"name": "docker.io/library/alpine:3", "labels": {"a.b/c": "x", "gc": "1", "empty": ""}}


def adaptor(path: Sequence[str]) -> str | None:
    if path[0] == "labels":
        return filters.label_adaptor(OBJ["labels"], path)  # type: ignore[arg-type]
    if path == ("name",) or list(path) == ["name"]:
        return OBJ["name"]  # type: ignore[return-value]
    return None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name==docker.io/library/alpine:3", True),
        ('name=="docker.io/library/alpine:3"', True),
        ("name!=x", True),
        ("name~=alpine", True),
        ("name~=^alpine", False),
        ('labels."a.b/c"==x', True),
        ("labels.a.b/c==x", True),
        ("labels.gc", True),
        ("labels.empty", False),
        ("labels.missing", False),
        ("labels.missing!=x", True),
        ("labels.gc==1,name~=alpine", True),
        ("labels.gc==1,name~=nope", False),
        ("unknown==x", False),
    ],
)
def test_match(text: str, expected: bool) -> None:
    assert filters.parse(text).match(adaptor) is expected


def test_any_of_several() -> None:
    parsed = filters.parse_all(["name==nope", "labels.gc==1"])
    assert filters.match_any(parsed, adaptor)
    assert filters.match_any([], adaptor)


@pytest.mark.parametrize("text", ["==x", "name==", 'name=="unterminated', "name~=(", "name==a,"])
def test_errors(text: str) -> None:
    with pytest.raises(InvalidArgument, match="filters"):
        filters.parse(text)
