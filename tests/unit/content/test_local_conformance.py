"""The shared content-backend suite, run against the local filesystem store."""

from __future__ import annotations

from pathlib import Path

from pycontainerd.content.local import LocalStore
from tests.conformance.content import ContentBackend, ContentStoreSuite


class TestLocalStore(ContentStoreSuite):
    def make_store(self, root: Path) -> ContentBackend:
        return LocalStore(root)
