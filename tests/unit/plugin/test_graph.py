from __future__ import annotations

import pytest

from pycontainerd.errdefs import InvalidArgument
from pycontainerd.plugin.graph import ordered
from pycontainerd.plugin.registration import Registration


def reg(type_: str, id_: str, *requires: str) -> Registration:
    return Registration(type=type_, id=id_, init=lambda _ctx: None, requires=requires)


def uris(regs: list[Registration]) -> list[str]:
    return [r.uri for r in regs]


def test_requirements_come_first_and_order_is_stable() -> None:
    regs = [reg("grpc", "a", "meta"), reg("meta", "db", "content"), reg("content", "local"), reg("grpc", "b")]
    assert uris(ordered(regs)) == ["content.local", "meta.db", "grpc.a", "grpc.b"]


def test_star_goes_last() -> None:
    regs = [reg("grpc", "intro", "*"), reg("x", "one"), reg("y", "two", "x")]
    assert uris(ordered(regs)) == ["x.one", "y.two", "grpc.intro"]


def test_disabled_are_dropped() -> None:
    regs = [reg("a", "1"), reg("b", "2", "a")]
    assert uris(ordered(regs, disabled=["a.1"])) == ["b.2"]


def test_cycle_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match=r"cycle: a\.1 -> b\.2 -> a\.1"):
        ordered([reg("a", "1", "b"), reg("b", "2", "a")])


def test_duplicate_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match="twice"):
        ordered([reg("a", "1"), reg("a", "1")])
