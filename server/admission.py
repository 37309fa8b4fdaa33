"""Admission control: a fixed budget of concurrent calls, per process or shared by workers.

The budget protects the calls already running: each one costs a steady slice of CPU
(encode + render at its fps), so a server that kept accepting would make every caller's
video stutter. Past the budget a new offer gets 503 + Retry-After before any peer
connection, task or thread is created for it, so refusing is nearly free.

With ``--workers N`` the budget is the machine's, not each worker's: ``SharedAdmission`` keeps
one counter per worker in a small memory-mapped file that every worker maps, and checks and
reserves under an ``flock`` on it. Why this design: each worker writes only its own slot, so a
worker that dies cannot leave a count behind that nobody owns — the supervisor zeroes its slot
before starting its replacement — and the kernel drops a dead process's flock, so a crash
mid-acquire cannot wedge the others. The same table tells a worker how loaded the others are
(``loads``), which is how offers are placed on the least-loaded worker.
"""

from __future__ import annotations

import fcntl
import mmap
import os
from pathlib import Path

import numpy as np

SLOT_BYTES = 4  # one int32 per worker


class Full(Exception):
    """The budget is spent; the caller should retry later."""


class Admission:
    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._held: set[str] = set()

    @property
    def in_use(self) -> int:
        return len(self._held)

    def acquire(self, call_id: str) -> None:
        """Reserve a slot synchronously (no await between check and reserve: no race)."""
        if len(self._held) >= self.budget:
            raise Full(f"server is full ({self.budget} calls)")
        self._held.add(call_id)

    def rename(self, old: str, new: str) -> None:
        """Hand a held slot to a new name (a placeholder becomes the call) without freeing it."""
        if old in self._held:
            self._held.discard(old)
            self._held.add(new)

    def release(self, call_id: str) -> None:
        self._held.discard(call_id)


def create_table(path: Path, workers: int) -> None:
    """The supervisor's part: a zeroed table, one slot per worker."""
    path.write_bytes(b"\0" * SLOT_BYTES * workers)


def clear_slot(path: Path, index: int) -> None:
    """The supervisor's part when a worker died: its calls died with it."""
    with open(path, "r+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(index * SLOT_BYTES)
        fh.write(b"\0" * SLOT_BYTES)


class SharedAdmission(Admission):
    """One budget for every worker; this process is worker ``index`` of the table at ``path``."""

    def __init__(self, budget: int, path: Path, index: int) -> None:
        super().__init__(budget)
        self.index = index
        self._fd = os.open(path, os.O_RDWR)
        size = os.fstat(self._fd).st_size
        self._map = mmap.mmap(self._fd, size)
        self._counts = np.frombuffer(self._map, dtype=np.int32)

    @property
    def workers(self) -> int:
        return len(self._counts)

    @property
    def in_use(self) -> int:
        """Calls held by every worker together."""
        return int(self._counts.sum())

    def loads(self) -> list[int]:
        return [int(x) for x in self._counts]

    def acquire(self, call_id: str) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            if int(self._counts.sum()) >= self.budget:
                raise Full(f"server is full ({self.budget} calls)")
            self._counts[self.index] += 1
            self._held.add(call_id)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def release(self, call_id: str) -> None:
        if call_id not in self._held:
            return
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            self._held.discard(call_id)
            self._counts[self.index] = max(0, int(self._counts[self.index]) - 1)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        del self._counts
        self._map.close()
        os.close(self._fd)
