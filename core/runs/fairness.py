"""Who trains next: round-robin across learners, so one learner's grid of nine runs cannot hold up a class.

Of the learners with runs waiting, the one whose last run started longest ago (or who never started one) goes
next, with their oldest waiting run; ties go to the learner who has waited longest. With one learner (or none:
outside a class every run's owner is empty) this is first come, first served.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Waiting:
    """A queued run, as the order needs it."""

    run_id: str
    owner: str  # '' outside a class
    queued_at: float


def owner_key(owner: str | None) -> str:
    """Names compare without case ('Ada' is 'ada'); runs made outside a class all belong to ''."""
    return (owner or "").casefold()


def round_robin(waiting: Iterable[Waiting], last_started: Mapping[str, float]) -> list[str]:
    """The ids of ``waiting`` in the order they will start. ``waiting`` is in queue order (oldest first);
    ``last_started`` maps an owner key to when that learner's most recent run started."""
    lines: dict[str, deque[Waiting]] = {}
    for run in waiting:
        lines.setdefault(owner_key(run.owner), deque()).append(run)
    turn = {owner: last_started.get(owner, float("-inf")) for owner in lines}
    clock = max([0.0, *(t for t in turn.values() if t != float("-inf"))])
    order = []
    while lines:
        owner = min(lines, key=lambda o: (turn[o], lines[o][0].queued_at, lines[o][0].run_id))
        order.append(lines[owner].popleft().run_id)
        clock += 1.0  # this learner's next run goes behind everyone who is waiting
        turn[owner] = clock
        if not lines[owner]:
            del lines[owner]
    return order
