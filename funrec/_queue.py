"""Storage for recorder states: the protocol, and a persistent FIFO queue.

A recorder holds its items in a :class:`Storage`: anything with O(1)
``append``, ``popleft``, ``len`` and oldest-first iteration that returns new
values instead of changing. :class:`Queue` serves eager recording; the JAX
adapter keeps a fixed-capacity ring of arrays instead.

The queue is
two cons lists (Okasaki's banker's queue): ``append`` conses onto the back,
``popleft`` takes the head of the front and, when the front runs out, reverses
the back into it once. Every operation returns a new queue that shares all its
cells with the old one, so appending costs O(1) and popping O(1) amortized
whatever the length, and no earlier version ever changes.

The memory rule every storage keeps: a step writes only into memory that no
existing value can see. An item a state holds, or that ``drain`` handed out,
belongs to that state, to every later one that shares it, and to the caller;
the recorder cannot know when its memory is free, so it never reuses it, and
a ring of fixed slots may not be overwritten in place while an earlier state
still holds the slot's item. Memory comes back through the allocator once the
last reference dies (a streaming shell drains and drops each frame).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeAlias

import torch
from tensordict import TensorDictBase

# A cons list is either None (empty) or a pair (head, tail).
_Cons: TypeAlias = "tuple[Any, _Cons] | None"


def _reverse(cells: _Cons) -> _Cons:
    out: _Cons = None
    while cells is not None:
        head, cells = cells
        out = (head, out)
    return out


def _walk(cells: _Cons) -> Iterator[Any]:
    while cells is not None:
        head, cells = cells
        yield head


def same_value(a: Any, b: Any) -> bool:
    """Value equality that also holds for tensors and TensorDicts."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
        )
    if isinstance(a, TensorDictBase) or isinstance(b, TensorDictBase):
        return (
            isinstance(a, TensorDictBase)
            and isinstance(b, TensorDictBase)
            and a.batch_size == b.batch_size
            and set(a.keys(True, True)) == set(b.keys(True, True))
            and all(same_value(a.get(k), b.get(k)) for k in a.keys(True, True))
        )
    return bool(a == b)


class Storage(Protocol):
    """What a recorder state holds its items in: an immutable FIFO."""

    def append(self, item: Any) -> Storage: ...

    def popleft(self) -> tuple[Any, Storage]: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...


class Queue:
    """An immutable FIFO queue with O(1) append and amortized O(1) popleft.

    Example:
        >>> q = Queue().append(1).append(2)
        >>> head, rest = q.popleft()
        >>> head, list(rest), list(q)
        (1, [2], [1, 2])
    """

    __slots__ = ("_back", "_front", "_size")

    def __init__(self, front: _Cons = None, back: _Cons = None, size: int = 0):
        self._front = front
        self._back = back
        self._size = size

    @classmethod
    def of(cls, items: Iterable[Any]) -> Queue:
        """A queue holding ``items``, oldest first."""
        items = tuple(items)
        return cls(None, _reverse_list(items), len(items))

    def append(self, item: Any) -> Queue:
        """A new queue with ``item`` after the others."""
        return Queue(self._front, (item, self._back), self._size + 1)

    def popleft(self) -> tuple[Any, Queue]:
        """The oldest item and a queue without it."""
        front, back = self._front, self._back
        if front is None:
            if back is None:
                raise IndexError("popleft from an empty Queue")
            front, back = _reverse(back), None
        assert front is not None  # back was not empty
        head, rest = front
        return head, Queue(rest, back, self._size - 1)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Any]:
        yield from _walk(self._front)
        yield from reversed(list(_walk(self._back)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Queue):
            return NotImplemented
        return len(self) == len(other) and all(map(same_value, self, other))

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self):
        # Flatten, so that pickling a long queue does not recurse once per cell.
        return Queue.of, (tuple(self),)

    def __repr__(self) -> str:
        return f"Queue(len={self._size})"


def _reverse_list(items: Iterable[Any]) -> _Cons:
    out: _Cons = None
    for item in items:
        out = (item, out)
    return out
