"""Image verifiers: executables that may refuse a pull (containerd's ``bindir`` verifier).

Every file in ``bin_dir`` (in name order, at most ``max_verifiers``) is run before any
content is fetched as::

    <verifier> -name <image name> -digest <resolved digest> -stdin-media-type application/vnd.oci.descriptor.v1+json

with the resolved descriptor as JSON on standard input. Exit status 0 accepts; anything else
refuses and stops the pull, and the verifier's standard output (first 32 KiB) is the reason.
Standard error goes to the daemon's debug log. A verifier that runs past
``per_verifier_timeout`` is killed (with its process group) and counts as an error. A missing
or empty directory accepts every image.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pycontainerd.errdefs import Unknown

if TYPE_CHECKING:
    from pycontainerd.core.images import Descriptor

log = logging.getLogger(__name__)

OUTPUT_LIMIT = 32 * 1024
DESCRIPTOR_MEDIA_TYPE = "application/vnd.oci.descriptor.v1+json"
DEFAULT_BIN_DIR = "/opt/pycontainerd/image-verifier/bin"


@dataclass(slots=True)
class VerifierConfig:
    """``[plugins."io.containerd.image-verifier.v1.bindir"]``."""

    bin_dir: str = DEFAULT_BIN_DIR
    max_verifiers: int = 10
    """At most this many verifiers run (in name order); -1 runs them all."""
    per_verifier_timeout: str = "10s"


@dataclass(frozen=True, slots=True)
class Judgement:
    """Whether the image may be pulled, and why."""

    ok: bool
    reason: str


class BinDirVerifier:
    """Runs the verifier executables in a directory."""

    def __init__(self, config: VerifierConfig | None = None) -> None:
        from pycontainerd.gc.durations import parse_duration

        self.config = config or VerifierConfig()
        self._timeout = parse_duration(self.config.per_verifier_timeout)

    async def verify(self, name: str, desc: Descriptor) -> Judgement:
        """Ask every verifier about ``name`` resolved to ``desc``."""
        directory = Path(self.config.bin_dir)
        try:
            entries = sorted(await asyncio.to_thread(os.listdir, directory))
        except FileNotFoundError:
            return Judgement(True, f"image verifier directory {directory} does not exist")
        if not entries:
            return Judgement(True, f"no image verifier binaries found in {directory}")
        reasons = []
        for i, entry in enumerate(entries):
            if 0 <= self.config.max_verifiers <= i:
                log.warning(
                    "image verifiers skipped: %s has %d entries, more than the configured max of %d",
                    directory,
                    len(entries),
                    self.config.max_verifiers,
                )
                break
            code, reason = await self._run(directory / entry, name, desc)
            if code != 0:
                return Judgement(False, f"verifier {entry} rejected image (exit code {code}): {reason}")
            reasons.append(f"{entry} => {reason}")
        return Judgement(True, ", ".join(reasons))

    async def _run(self, binary: Path, name: str, desc: Descriptor) -> tuple[int, str]:
        document = {"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size}
        if desc.annotations:
            document["annotations"] = desc.annotations
        try:
            proc = await asyncio.create_subprocess_exec(
                str(binary),
                "-name",
                name,
                "-digest",
                desc.digest,
                "-stdin-media-type",
                DESCRIPTOR_MEDIA_TYPE,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group: a timeout kills its children too
            )
        except OSError as exc:
            raise Unknown(f"failed to call verifier {binary.name}: {exc}") from exc
        try:
            stdout, stderr = await asyncio.wait_for(
                proc.communicate((json.dumps(document) + "\n").encode()), self._timeout
            )
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise Unknown(
                f"failed to call verifier {binary.name}: timed out after {self.config.per_verifier_timeout}"
            ) from None
        for line in stderr[:OUTPUT_LIMIT].decode(errors="replace").splitlines():
            log.debug("%s", line, extra={"image_verifier": binary.name, "stream": "stderr"})
        reason = stdout[:OUTPUT_LIMIT].decode(errors="replace").strip()
        if len(stdout) > OUTPUT_LIMIT:
            reason += "(stdout truncated)"
        return proc.returncode or 0, reason
