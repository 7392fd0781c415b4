"""Users and groups from run-as fields, image USER strings and the image's /etc/passwd and /etc/group."""

from __future__ import annotations

from typing import cast

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cri.spec import ImageConfig
from pycontainerd.cri.spec.users import member_gids, parse_group, parse_passwd, resolve_user, user_string
from pycontainerd.errdefs import InvalidArgument, Unimplemented
from tests.unit.cri.spec.helpers import IMAGE, build, container_config

# containerd's TestProcessUser files.
PASSWD = """
root:x:0:0:root:/root:/bin/sh
alice:x:1000:1000:alice:/home/alice:/bin/sh
"""
GROUP = """
root:x:0
alice:x:1000:
additional-group-for-alice:x:11111:alice
additional-group-for-root:x:22222:root
"""


def test_parsing_follows_moby_user() -> None:
    assert parse_passwd("\n  bob:x:7:8\nbad:x:nan:9:extra\n") == [
        parse_passwd("bob:x:7:8")[0],
        parse_passwd("bad:x:0:9")[0],
    ]
    assert [(g.name, g.gid, g.members) for g in parse_group("a:x:1:\nb:x:2:u,v\nc")] == [
        ("a", 1, ()),
        ("b", 2, ("u", "v")),
        ("c", 0, ()),
    ]


@pytest.mark.parametrize(
    ("userstr", "expected"),
    [
        ("1000", (1000, 1000)),  # uid found: its primary group
        ("4242", (4242, 0)),  # uid not listed: gid 0
        ("alice", (1000, 1000)),
        ("1000:2000", (1000, 2000)),  # numbers: no lookup at all
        ("alice:root", (1000, 0)),
        ("alice:22222", (1000, 22222)),
        ("0:additional-group-for-alice", (0, 11111)),
        ("1000:", (1000, 0)),
    ],
)
def test_resolve_user(userstr: str, expected: tuple[int, int]) -> None:
    assert resolve_user(userstr, PASSWD, GROUP) == expected


def test_uid_without_passwd_file_is_taken_with_gid_0() -> None:
    assert resolve_user("33", None, None) == (33, 0)


@pytest.mark.parametrize(
    ("userstr", "passwd", "group"),
    [
        ("bob", PASSWD, GROUP),  # unknown name
        ("alice", None, None),  # a name needs /etc/passwd
        ("alice:nogroup", PASSWD, GROUP),
        ("1:2:3", PASSWD, GROUP),
        ("-1", PASSWD, GROUP),
        ("2147483648", PASSWD, GROUP),  # above runc's limit
        ("1:99999999999999999999", PASSWD, GROUP),
    ],
)
def test_bad_users_are_invalid(userstr: str, passwd: str | None, group: str | None) -> None:
    with pytest.raises(InvalidArgument):
        resolve_user(userstr, passwd, group)


def test_user_string_from_cri_fields() -> None:
    assert user_string("", None, None) == ""
    assert user_string("alice", 5, None) == "alice"  # the name wins over the uid
    assert user_string("alice", None, 7) == "alice:7"
    assert user_string("", 5, 7) == "5:7"
    with pytest.raises(InvalidArgument, match="without user"):
        user_string("", None, 7)


def test_member_gids_skip_the_personal_group() -> None:
    assert member_gids("alice", PASSWD, GROUP) == [11111]
    assert member_gids("1000", PASSWD, GROUP) == [11111]  # uid → name through passwd
    assert member_gids("4242", PASSWD, GROUP) == []
    assert member_gids("alice", PASSWD, None) == []


def _user(sc: api.LinuxContainerSecurityContext | None, image_user: str = "") -> dict[str, object]:
    config = container_config()
    config.linux.ClearField("security_context")
    if sc is not None:
        config.linux.security_context.CopyFrom(sc)
    image = ImageConfig(entrypoint=IMAGE.entrypoint, user=image_user)
    user: dict[str, object] = build(config, image=image, passwd=PASSWD, group=GROUP)["process"]["user"]
    return user


# containerd's TestProcessUser table: the policy, the user's origin, and the groups merged in.
STRICT = api.Strict


@pytest.mark.parametrize(
    ("sc", "image_user", "expected"),
    [
        (
            api.LinuxContainerSecurityContext(
                run_as_user=api.Int64Value(value=1000),
                run_as_group=api.Int64Value(value=2000),
                supplemental_groups=[3333],
            ),
            "",
            {"uid": 1000, "gid": 2000, "additionalGids": [2000, 3333, 11111]},
        ),
        (None, "1000", {"uid": 1000, "gid": 1000, "additionalGids": [1000, 11111]}),
        (
            api.LinuxContainerSecurityContext(
                run_as_user=api.Int64Value(value=1000),
                run_as_group=api.Int64Value(value=2000),
                supplemental_groups=[3333],
            ),
            "0",
            {"uid": 1000, "gid": 2000, "additionalGids": [2000, 3333, 11111]},
        ),
        (None, "", {"uid": 0, "gid": 0, "additionalGids": [0, 22222]}),
        (
            api.LinuxContainerSecurityContext(
                run_as_user=api.Int64Value(value=1000),
                run_as_group=api.Int64Value(value=2000),
                supplemental_groups=[3333],
                supplemental_groups_policy=STRICT,
            ),
            "",
            {"uid": 1000, "gid": 2000, "additionalGids": [2000, 3333]},
        ),
        (
            api.LinuxContainerSecurityContext(supplemental_groups_policy=STRICT),
            "1000",
            {"uid": 1000, "gid": 1000, "additionalGids": [1000]},
        ),
        (
            api.LinuxContainerSecurityContext(
                run_as_user=api.Int64Value(value=1000),
                run_as_group=api.Int64Value(value=2000),
                supplemental_groups=[3333],
                supplemental_groups_policy=STRICT,
            ),
            "0",
            {"uid": 1000, "gid": 2000, "additionalGids": [2000, 3333]},
        ),
    ],
    ids=["merge-sc", "merge-image", "merge-both", "merge-default", "strict-sc", "strict-image", "strict-both"],
)
def test_process_user_like_containerd(
    sc: api.LinuxContainerSecurityContext | None, image_user: str, expected: dict[str, object]
) -> None:
    assert _user(sc, image_user) == expected


def test_run_as_username_and_image_name_group() -> None:
    sc = api.LinuxContainerSecurityContext(run_as_username="alice")
    assert _user(sc) == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 11111]}
    assert _user(None, "alice:root") == {"uid": 1000, "gid": 0, "additionalGids": [0, 11111]}


def test_unknown_username_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="bob"):
        _user(api.LinuxContainerSecurityContext(run_as_username="bob"))


def test_group_without_user_is_invalid() -> None:
    with pytest.raises(InvalidArgument):
        _user(api.LinuxContainerSecurityContext(run_as_group=api.Int64Value(value=5)), "1000")


def test_unknown_supplemental_groups_policy() -> None:
    with pytest.raises(Unimplemented):
        _user(api.LinuxContainerSecurityContext(supplemental_groups_policy=cast(api.SupplementalGroupsPolicy, 7)))
