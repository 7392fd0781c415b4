from __future__ import annotations

import pytest

from pycontainerd import identifiers
from pycontainerd.errdefs import FailedPrecondition, InvalidArgument
from pycontainerd.namespaces import RequestContext, from_metadata, namespace_required


@pytest.mark.parametrize("good", ["default", "k8s.io", "a-b_c.d", "A1", "x" * 76])
def test_valid(good: str) -> None:
    assert identifiers.validate(good) == good


@pytest.mark.parametrize("bad", ["", "-a", "a-", "a..b", "a b", "ä", "x" * 77, "a/b"])
def test_invalid(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        identifiers.validate(bad)


def test_metadata_headers() -> None:
    ctx = from_metadata([("containerd-namespace", "ns1"), ("containerd-lease", "l1"), ("other", "x")])
    assert (ctx.namespace, ctx.lease) == ("ns1", "l1")
    assert from_metadata({"containerd-namespace-ttrpc": ["ttrpc-ns"]}).namespace == "ttrpc-ns"


def test_namespace_required() -> None:
    with pytest.raises(FailedPrecondition, match="namespace is required"):
        namespace_required(RequestContext())
    with pytest.raises(InvalidArgument):
        namespace_required(RequestContext(namespace="bad..ns"))
    assert namespace_required(RequestContext(namespace="ok")) == "ok"
