"""Admission control: a fixed budget of concurrent calls.

The budget protects the calls already running: each one costs a steady slice of CPU
(encode + render at its fps), so a server that kept accepting would make every caller's
video stutter. Past the budget a new offer gets 503 + Retry-After before any peer
connection, task or thread is created for it, so refusing is nearly free.
"""

from __future__ import annotations


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

    def release(self, call_id: str) -> None:
        self._held.discard(call_id)
