"""CheckpointContainer: a running container's CRIU images and metadata as one tar archive.

The archive at ``location`` holds what containerd's (and CRI-O's) checkpoint archives hold:
``checkpoint/`` (the CRIU images, dumped by the shim with the container left running),
``config.dump`` (the container's CRI metadata as JSON), ``spec.dump`` (its OCI spec) and
``status.dump``. The archive is written to a temporary file beside ``location`` and renamed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from google.protobuf import any_pb2, empty_pb2, json_format

from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2
from pycontainerd.api.containerd.types.runc.options import oci_pb2
from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.errdefs import FailedPrecondition, InvalidArgument

if TYPE_CHECKING:
    from pycontainerd.cri.service import CRIService

CHECKPOINT_OPTIONS = "containerd.runc.v1.CheckpointOptions"
DEFAULT_TIMEOUT = 600.0


def _write_archive(target: Path, directory: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-")
    os.close(fd)
    try:
        with tarfile.open(tmp, "w") as tar:
            for entry in sorted(directory.iterdir()):
                tar.add(entry, arcname=entry.name)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def checkpoint_container(
    svc: CRIService, request: api.CheckpointContainerRequest
) -> api.CheckpointContainerResponse:
    """Dump a running container (it keeps running) into the archive at ``location``."""
    ctr = svc.container(request.container_id)
    if ctr.status.state != api.CONTAINER_RUNNING:
        raise FailedPrecondition(f"container {ctr.id} is not running")
    if not request.location or not os.path.isabs(request.location):
        raise InvalidArgument("location must be an absolute path of the archive to write")
    target = Path(request.location)
    if not target.parent.is_dir():
        raise InvalidArgument(f"directory of {target} does not exist")
    work = Path(tempfile.mkdtemp(prefix="pycontainerd-cri-checkpoint-", dir=svc.state_dir))
    try:
        images = work / "checkpoint"
        images.mkdir()
        options = oci_pb2.CheckpointOptions(exit=False, image_path=str(images), work_path=str(work / "criu-work"))
        call = shim_pb2.CheckpointTaskRequest(id=ctr.id, path=str(images))
        call.options.CopyFrom(any_pb2.Any(type_url=CHECKPOINT_OPTIONS, value=options.SerializeToString()))
        task = svc.tasks.get(svc.ctx, ctr.id)
        timeout = float(request.timeout) if request.timeout > 0 else DEFAULT_TIMEOUT
        await task.client.call("Checkpoint", call, empty_pb2.Empty, timeout)
        record = svc.metadata.containers.get(svc.ctx, ctr.id)
        (work / "spec.dump").write_bytes(record.spec.value if record.spec is not None else b"{}")
        config = {
            "id": ctr.id,
            "name": ctr.name,
            "sandboxID": ctr.sandbox_id,
            "rootfsImage": ctr.image_ref,
            "rootfsImageRef": ctr.image_id,
            "runtime": svc.config.handler(svc.sandbox(ctr.sandbox_id).runtime_handler).runtime_type,
            "createdTime": ctr.created_at,
            "criConfig": json.loads(json_format.MessageToJson(ctr.config)),
        }
        (work / "config.dump").write_text(json.dumps(config))
        (work / "status.dump").write_text(json.dumps({"pid": ctr.status.pid, "startedAt": ctr.status.started_at}))
        shutil.rmtree(work / "criu-work", ignore_errors=True)
        await asyncio.to_thread(_write_archive, target, work)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    return api.CheckpointContainerResponse()
