"""Progress display for transfers: one line per blob, redrawn in place on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from pycontainerd.cli._client import human_size

if TYPE_CHECKING:
    from pycontainerd.api.containerd.types.transfer import progress_pb2

BAR = 30
DONE_EVENTS = {"complete", "already exists", "extracted", "saved", "pushed", "mounted", "exists"}


class ProgressDisplay:
    """Collects Progress messages and draws them as ctr does (bars on a tty, lines otherwise)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.rows: dict[str, progress_pb2.Progress] = {}
        self.drawn = 0
        self.started = time.monotonic()
        self._last = 0.0

    def __call__(self, p: progress_pb2.Progress) -> None:
        if not p.name:
            self._line(p.event)
            return
        self.rows[p.name] = p
        if not self.tty:
            if p.event in DONE_EVENTS or p.event in ("waiting", "extracting"):
                self._line(f"{p.name}: {p.event}")
            return
        now = time.monotonic()
        if now - self._last > 0.1 or p.event in DONE_EVENTS:
            self._last = now
            self.draw()

    def _line(self, text: str) -> None:
        if self.tty and self.drawn:
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0
        self.out.write(text + "\n")
        if self.tty:
            self.draw()
        self.out.flush()

    def draw(self) -> None:
        """Redraw every row in place."""
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")
        lines = [self._row(p) for p in self.rows.values()]
        lines.append(f"elapsed: {time.monotonic() - self.started:.1f} s")
        self.out.write("\n".join(lines) + "\n")
        self.drawn = len(lines)
        self.out.flush()

    @staticmethod
    def _row(p: progress_pb2.Progress) -> str:
        name = p.name if len(p.name) <= 40 else p.name[:37] + "..."
        if p.total > 0:
            filled = min(BAR, BAR * p.progress // p.total)
            bar = "|" + "+" * filled + "-" * (BAR - filled) + "|"
            return f"{name:<40} {p.event:<15} {bar} {human_size(p.progress)}/{human_size(p.total)}"
        return f"{name:<40} {p.event}"
