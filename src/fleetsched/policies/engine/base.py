"""Protocols of engine-local policies.

The engine hands policies its own sequence objects (``Seq``: the request, tokens computed and
generated, state) and a read-only engine handle; policies must not mutate either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from fleetsched.engine.instance import Instance
    from fleetsched.engine.sequence import Seq


class WaitingQueue(Protocol):
    """Order of the waiting queue (the ordering policy)."""

    #: True when the head's identity cannot change with time alone (allows fast-forward while
    #: the head is blocked).
    time_invariant: bool

    def push(self, seq: Seq) -> None: ...
    def push_front(self, seq: Seq) -> None:
        """Re-queue a preempted request (vLLM puts it first)."""
        ...

    def peek(self, now: float) -> Seq: ...
    def pop(self, now: float) -> Seq:
        """Remove and return what ``peek(now)`` returned."""
        ...

    def __len__(self) -> int: ...


class AdmissionPolicy(Protocol):
    """Decides whether the head of the waiting queue may start now."""

    #: True when a refusal stays a refusal while free blocks only shrink (allows fast-forward).
    monotone: bool

    def admit(self, seq: Seq, need_blocks: int, engine: Instance) -> bool: ...


class PreemptionPolicy(Protocol):
    def victim(self, running: list[Seq]) -> Seq:
        """Pick the request to preempt; ``running`` is in admission order (oldest first)."""
        ...


class RetentionPolicy(Protocol):
    """Keeps the KV blocks of finished workflow calls cached across tool gaps.

    ``bind(engine)`` gives it the engine; it pins blocks by taking a reference on them
    (``engine.kv.touch``) and unpins by dropping it (``engine.kv.release``), so pinned blocks
    are never evicted by the LRU and count as used until released.
    """

    def on_finish(self, seq: Seq, now: float) -> None:
        """``seq`` finished (its blocks were just released to the cache's LRU)."""
        ...

    def on_admit(self, seq: Seq, now: float) -> None:
        """``seq`` was admitted (it took references on its cached prefix)."""
        ...

    def release(self, blocks: int, now: float) -> int:
        """Unpin, least valuable first, until ``blocks`` more are free; return how many
        blocks were unpinned (0: nothing left to unpin)."""
        ...

    def expire(self, now: float) -> None:
        """Unpin what is due by ``now``."""
        ...

    def next_expiry(self) -> float:
        """When the next pin is due (inf: none)."""
        ...

    def held(self) -> list[int]:
        """Keys of the blocks it pins, one entry per reference (for invariant checks)."""
        ...
