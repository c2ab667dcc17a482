"""Waiting-queue policies (which request a replica admits next) and routers (which replica a
request goes to). Each is a small class in a registry: a new one is one class and one
`@register_*` line; registering a name twice raises.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from tokenfab.registry import Registry
from tokenfab.serving.request import Request

# -- waiting queues ---------------------------------------------------------------------


class WaitingQueue(Protocol):
    def push(self, req: Request) -> None: ...
    def push_front(self, req: Request) -> None: ...  # a preempted request resumes first
    def peek(self) -> Request | None: ...
    def pop(self) -> Request: ...
    def __len__(self) -> int: ...


QUEUES: Registry[Callable[[], WaitingQueue]] = Registry("scheduling policy")
register_queue = QUEUES.register


def make_queue(name: str) -> WaitingQueue:
    return QUEUES.get(name)()


@register_queue("fcfs")
class FCFSQueue(deque):
    """First come, first served (vLLM's default).

    The deque itself, so that the replica's emptiness and length checks (several per iteration) run in C
    rather than through a Python `__len__`."""

    push = deque.append
    push_front = deque.appendleft
    pop = deque.popleft  # type: ignore[assignment]  (the queue's pop takes the oldest)

    def peek(self) -> Request | None:
        return self[0] if self else None


@register_queue("sjf")
class ShortestPromptFirst:
    """Shortest remaining prefill first (ties by arrival); preempted requests go first."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Request]] = []
        self._seq = itertools.count()

    def push(self, req: Request) -> None:
        heapq.heappush(self._heap, (req.to_prefill, next(self._seq), req))

    def push_front(self, req: Request) -> None:
        heapq.heappush(self._heap, (-1, next(self._seq), req))

    def peek(self) -> Request | None:
        return self._heap[0][2] if self._heap else None

    def pop(self) -> Request:
        return heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)


# -- routers ----------------------------------------------------------------------------


class ReplicaView(Protocol):
    """What a router may look at: outstanding work and cached prefixes of a replica."""

    def outstanding_tokens(self) -> int: ...
    def cached_prefix_blocks(self, req: Request) -> int: ...


class Router(Protocol):
    def route(self, req: Request, replicas: Sequence[ReplicaView]) -> int: ...


ROUTERS: Registry[Callable[[], Router]] = Registry("router")
register_router = ROUTERS.register


def make_router(name: str) -> Router:
    return ROUTERS.get(name)()


@register_router("round-robin")
class RoundRobin:
    def __init__(self) -> None:
        self._next = 0

    def route(self, req: Request, replicas: Sequence[ReplicaView]) -> int:
        i = self._next % len(replicas)
        self._next += 1
        return i


@register_router("least-outstanding")
class LeastOutstanding:
    """The replica with the fewest tokens still to process (prefill to do plus outputs to generate)."""

    def route(self, req: Request, replicas: Sequence[ReplicaView]) -> int:
        return min(range(len(replicas)), key=lambda i: replicas[i].outstanding_tokens())


@register_router("prefix-affinity")
class PrefixAffinity:
    """KV-cache aware: the replica holding the longest cached prefix of the prompt; ties (and
    requests without hashes) go to the least loaded."""

    def route(self, req: Request, replicas: Sequence[ReplicaView]) -> int:
        if not req.hash_ids:
            return LeastOutstanding().route(req, replicas)
        return min(range(len(replicas)),
                   key=lambda i: (-replicas[i].cached_prefix_blocks(req), replicas[i].outstanding_tokens()))
