"""The container process: command line, environment, working directory and user."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cri.spec.users import member_gids, merge_gids, resolve_user, user_string
from pycontainerd.errdefs import InvalidArgument, Unimplemented
from pycontainerd.oci.spec import DEFAULT_PATH

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from pycontainerd.cri.spec.images import ImageConfig


def process_args(config: Any, image: ImageConfig) -> list[str]:
    """The command line: kubelet's command and args over the image's entrypoint and cmd.

    A command replaces the entrypoint and drops the image's cmd; args alone replace the cmd
    and keep the entrypoint (Docker's rules). An entrypoint of exactly ``[""]`` means none.

    Raises:
        InvalidArgument: nothing to run.
    """
    command, args = [str(c) for c in config.command], [str(a) for a in config.args]
    if not command:
        if not args:
            args = list(image.cmd)
        if image.entrypoint != ("",):
            command = list(image.entrypoint)
    if not command and not args:
        raise InvalidArgument("no command specified")
    return command + args


def merge_env(base: Sequence[str], overrides: Iterable[str]) -> list[str]:
    """``base`` with each ``KEY=value`` of ``overrides`` replacing the same key or appended.

    An override without "=" removes the key (containerd's ``WithEnv``).
    """
    result: list[str | None] = list(base)
    index = {entry.partition("=")[0]: i for i, entry in enumerate(base)}
    for entry in overrides:
        key, sep, _ = entry.partition("=")
        if not sep:
            if key in index:
                result[index[key]] = None
            continue
        if key in index:
            result[index[key]] = entry
        else:
            index[key] = len(result)
            result.append(entry)
    return [e for e in result if e]


def container_env(config: Any, image: ImageConfig, hostname: str, *, tty: bool) -> list[str]:
    """The container's environment, in containerd's order of application.

    The default PATH, then ``TERM=xterm`` for a terminal, ``HOSTNAME``, the image's variables,
    and kubelet's last (each replacing an earlier value of the same name).
    """
    env = [f"PATH={DEFAULT_PATH}"]
    if tty:
        env.append("TERM=xterm")  # containerd appends it without looking for an existing TERM
    env = merge_env(env, [f"HOSTNAME={hostname}"])
    env = merge_env(env, image.env)
    values = [f"{kv.key}={_text(kv.value)}" for kv in config.envs]
    return merge_env(env, values)


def _text(value: Any) -> str:
    # KeyValue.value is bytes in this proto (string upstream); values are UTF-8 text in practice.
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _int_value(message: Any, field: str) -> int | None:
    return int(getattr(message, field).value) if message.HasField(field) else None


def container_user(security_context: Any, image: ImageConfig, passwd: str | None, group: str | None) -> dict[str, Any]:
    """The ``process.user`` of a container, as containerd's option sequence leaves it.

    The user comes from run_as_username, run_as_user (and run_as_group), else the image's
    ``USER``; with none of them it is root. The additional groups are the pod's
    supplemental_groups, the primary group and, with the Merge policy (the default), every
    group /etc/group lists the user in.

    Raises:
        InvalidArgument: a malformed user, an unknown name, a group without a user.
        Unimplemented: an unknown supplemental groups policy.
    """
    sc = security_context
    supplemental = [int(g) % 2**32 for g in sc.supplemental_groups]
    username = str(sc.run_as_username)
    run_as_user, run_as_group = _int_value(sc, "run_as_user"), _int_value(sc, "run_as_group")
    userstr = user_string(username, run_as_user, run_as_group) or image.user
    uid, gid = resolve_user(userstr, passwd, group) if userstr else (0, 0)
    policy = int(sc.supplemental_groups_policy)
    if policy == api.Merge:
        # The name (or uid) whose /etc/group memberships count: the image's user without its group.
        member = username or (str(run_as_user) if run_as_user is not None else image.user.partition(":")[0]) or "0"
        gids = merge_gids(supplemental, [gid], member_gids(member, passwd, group))
    elif policy == api.Strict:
        gids = merge_gids(supplemental, [gid] if userstr else [])
    else:
        raise Unimplemented(f"not implemented in this containerd release: SupplementalGroupsPolicy={policy}")
    user: dict[str, Any] = {"uid": uid, "gid": gid}
    if gids:
        user["additionalGids"] = gids
    return user


def sandbox_user(security_context: Any, image: ImageConfig, passwd: str | None, group: str | None) -> dict[str, Any]:
    """The ``process.user`` of a pause container.

    The user is run_as_user (and run_as_group), else the image's ``USER``. containerd sets the
    supplemental groups before the user, and setting a user clears the additional groups down
    to the primary one; that order is kept, so the groups stay only for a pause image without
    a user.
    """
    sc = security_context
    userstr = user_string("", _int_value(sc, "run_as_user"), _int_value(sc, "run_as_group")) or image.user
    if not userstr:
        gids = merge_gids(int(g) % 2**32 for g in sc.supplemental_groups)
        return {"uid": 0, "gid": 0, **({"additionalGids": gids} if gids else {})}
    uid, gid = resolve_user(userstr, passwd, group)
    return {"uid": uid, "gid": gid, "additionalGids": [gid]}
