"""Fuzzing image documents: walking indexes, manifests and configs (for a platform or all of them)
and reading what an unpack reads from the result. Whatever the documents hold, the walk returns
manifests or fails with InvalidArgument, NotFound or Unimplemented."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pycontainerd.errdefs import InvalidArgument, NotFound, Unimplemented
from pycontainerd.images.manifest import chain_ids, descriptor_from_json, manifests
from pycontainerd.images.platforms import Platform, matches, parse
from pycontainerd.images.unpack import is_layer_type
from tests.fuzz.budget import count, fuzz_settings
from tests.fuzz.jsondocs import image_store, platform_json

CLEAN_ERRORS = (InvalidArgument, NotFound, Unimplemented)
PLATFORMS = st.sampled_from(
    [None, Platform("linux", "amd64"), Platform("linux", "arm64", "v8"), Platform("windows", "amd64")]
)


@fuzz_settings(600)
@given(docs=image_store(), platform=PLATFORMS, all_platforms=st.booleans())
def test_walking_image_documents(
    docs: tuple[dict[str, bytes], dict[str, Any]], platform: Platform | None, all_platforms: bool
) -> None:
    store, target_json = docs

    def read(digest: str) -> bytes:
        try:
            return store[digest]
        except (KeyError, TypeError):
            raise NotFound(f"content {digest!r}") from None

    count("images: index/manifest/config documents", len(store))
    try:
        target = descriptor_from_json(target_json)
        found = manifests(read, target, platform, all_platforms=all_platforms)
        for image in found:
            # What an unpack and the image service read from a walked manifest.
            diff_ids = image.diff_ids
            assert all(isinstance(d, str) for d in diff_ids)
            chain_ids(diff_ids)
            assert isinstance(str(image.platform), str)
            for layer in image.layers:
                is_layer_type(layer.media_type)
    except CLEAN_ERRORS:
        pass


@fuzz_settings(300)
@given(want=st.text(max_size=30), have=platform_json())
def test_platform_strings_and_objects(want: str, have: Any) -> None:
    count("images: platform specs")
    try:
        wanted = parse(want)
    except InvalidArgument:
        return
    try:
        matches(wanted, have if isinstance(have, dict) else None)
    except InvalidArgument:
        pass
