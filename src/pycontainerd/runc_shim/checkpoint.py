"""Checkpoint and restore in the shim: containerd's options turned into runc/CRIU flags.

The daemon sends ``CheckpointTaskRequest{path, options}``; ``options`` is a
``containerd.runc.v1.CheckpointOptions`` (exit, open TCP, external unix sockets, terminal, file
locks, empty namespaces, cgroups mode, image/work/parent paths). As in the Go shim:

* without ``exit`` the container keeps running (``--leave-running``);
* CRIU's work files go to ``work_path`` when the client names one (and stay there), else to
  ``<bundle>/work/criu-work``, removed afterwards; on failure CRIU's ``dump.log`` is copied to
  ``<bundle>/criu-dump.log`` and the error names it;
* a task created with ``checkpoint`` set is restored by Start (``runc restore --detach``); until
  then it is "created" with no PID. Restore works in the runc options' ``criu_work_path`` or the
  bundle's work directory.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pycontainerd.api.containerd.types.runc.options import oci_pb2
from pycontainerd.errdefs import InvalidArgument
from pycontainerd.runc_shim.runc import CriuOptions

if TYPE_CHECKING:
    from google.protobuf import any_pb2

CHECKPOINT_OPTIONS = "containerd.runc.v1.CheckpointOptions"
DUMP_LOG = "dump.log"
RESTORE_LOG = "restore.log"
MAX_ERROR_LINES = 3


@dataclass(frozen=True, slots=True)
class CheckpointPlan:
    """One ``runc checkpoint`` to run."""

    criu: CriuOptions
    exit: bool
    keep_work: bool


def parse_options(options: any_pb2.Any | None) -> oci_pb2.CheckpointOptions:
    """The request's CheckpointOptions (defaults when absent); InvalidArgument for another type."""
    if options is None or not options.type_url:
        return oci_pb2.CheckpointOptions()
    if options.type_url.rsplit("/", 1)[-1] != CHECKPOINT_OPTIONS:
        raise InvalidArgument(f"checkpoint options of type {options.type_url!r}, want {CHECKPOINT_OPTIONS}")
    return oci_pb2.CheckpointOptions.FromString(options.value)


def work_dir(bundle: str) -> str:
    """The task's work directory (``<bundle>/work`` links to it), or the bundle itself."""
    work = os.path.join(bundle, "work")
    return work if os.path.isdir(work) else bundle


def plan(image_path: str, options: any_pb2.Any | None, bundle: str) -> CheckpointPlan:
    """What to run for a CheckpointTaskRequest with ``image_path`` and ``options``."""
    if not image_path:
        raise InvalidArgument("checkpoint path must be set")
    opts = parse_options(options)
    work = opts.work_path or os.path.join(work_dir(bundle), "criu-work")
    criu = CriuOptions(
        image_path=image_path,
        work_path=work,
        parent_path=opts.parent_path,
        tcp_established=opts.open_tcp,
        ext_unix_sk=opts.external_unix_sockets,
        shell_job=opts.terminal,
        file_locks=opts.file_locks,
        empty_namespaces=tuple(opts.empty_namespaces),
        cgroups_mode=opts.cgroups_mode,
    )
    return CheckpointPlan(criu=criu, exit=opts.exit, keep_work=bool(opts.work_path))


def restore_options(image_path: str, bundle: str, criu_work_path: str = "") -> CriuOptions:
    """The ``runc restore`` flags for a task created from the checkpoint at ``image_path``."""
    return CriuOptions(image_path=image_path, work_path=criu_work_path or work_dir(bundle))


def criu_errors(log_path: str) -> str:
    """The first ``Error (...)`` lines of a CRIU log: what went wrong, without the noise."""
    try:
        with open(log_path, errors="replace") as fh:
            lines = [line.strip() for line in fh if "Error (" in line]
    except OSError:
        return ""
    # CRIU can complain about things it then works around (rlimits): the last lines are the cause.
    return "; ".join(lines[-MAX_ERROR_LINES:])


def keep_log(work_path: str, name: str, bundle: str) -> str:
    """Copy CRIU's log out of the work directory (which may be removed) into the bundle; returns
    where it is now, or "" when CRIU wrote none (it did not get that far)."""
    source = os.path.join(work_path, name)
    if not os.path.exists(source):
        return ""
    target = os.path.join(bundle, f"criu-{name}")
    try:
        shutil.copyfile(source, target)
    except OSError:
        return source
    return target


def failure_message(runc_error: str, log_path: str) -> str:
    """containerd-like wording: the runc error, CRIU's own error lines, and where the log is."""
    if not log_path:
        return runc_error
    detail = criu_errors(log_path)
    return f"{runc_error}{': ' + detail if detail else ''} path= {log_path}"


def remove_work(plan_: CheckpointPlan) -> None:
    """Drop CRIU's work directory unless the client asked for it."""
    if not plan_.keep_work and plan_.criu.work_path:
        shutil.rmtree(plan_.criu.work_path, ignore_errors=True)
