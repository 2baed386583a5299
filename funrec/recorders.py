"""The built-in recorders: video frames, TensorDict steps, episode statistics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from tensordict import TensorDictBase

from funrec._queue import Queue
from funrec.errors import BufferFullError, MissingKeyError, RecorderError
from funrec.layout import Layout, LayoutError, as_tensor, count_nonfinite, detect, normalize
from funrec.recorder import Counts, Recorder

Key = str | tuple[str, ...]
OVERFLOW_POLICIES = ("drop_newest", "drop_oldest", "error")


class FramesState(NamedTuple):
    """State of :func:`frames`.

    Attributes:
        items: the frames held, uint8 ``[*batch, 3, H, W]`` CPU tensors, oldest first.
        counts: what happened to every frame seen.
        layout: the layout decided on the first recorded frame (or given), else None.
        nonfinite: NaN and infinite values met in float frames (NaN became 0, inf was clipped).
    """

    items: Queue = Queue()
    counts: Counts = Counts()
    layout: Layout | None = None
    nonfinite: int = 0


class TensorDictsState(NamedTuple):
    """State of :func:`tensordicts`.

    Attributes:
        items: detached CPU copies of the recorded TensorDicts, oldest first.
        counts: what happened to every TensorDict seen.
        batch_size: the batch size of the first recorded TensorDict, else None.
    """

    items: Queue = Queue()
    counts: Counts = Counts()
    batch_size: tuple[int, ...] | None = None


class Episode(NamedTuple):
    """One finished episode.

    Attributes:
        env: flat index of the sub-environment in the batch (0 when unbatched).
        total_reward: the sum of the episode's rewards (its undiscounted return).
        length: the number of steps of the episode.
    """

    env: int
    total_reward: float
    length: int


class EpisodeStatsState(NamedTuple):
    """State of :func:`episode_stats`.

    Attributes:
        episodes: finished episodes, in the order they finished.
        running_reward: per sub-env, the reward summed so far in the current episode.
        running_length: per sub-env, the steps so far in the current episode.
        counts: steps seen and recorded.
    """

    episodes: Queue = Queue()
    running_reward: tuple[float, ...] = ()
    running_length: tuple[int, ...] = ()
    counts: Counts = Counts()


def admit(counts: Counts, held: int, skip: int, capacity: int | None, overflow: str) -> str:
    """What a buffered recorder does with the next item.

    A pure decision on counters alone, shared by every buffered recorder (and
    meant to be mirrored by array-programming adapters).

    Args:
        counts: the recorder's counts before the item.
        held: how many items the buffer holds now.
        skip: keep one item in ``skip`` (the 1st, the ``skip+1``-th, ...).
        capacity: the most items the buffer may hold, or None for no bound.
        overflow: the policy when the buffer is full.

    Returns:
        ``"skip"``, ``"record"``, ``"drop"`` (the new item), ``"evict"`` (the
        oldest item, then record the new one) or ``"full"`` (raise).

    Example:
        >>> admit(Counts(seen=3), held=0, skip=2, capacity=None, overflow="error")
        'skip'
    """
    if counts.seen % skip:
        return "skip"
    if capacity is None or held < capacity:
        return "record"
    return {"drop_newest": "drop", "drop_oldest": "evict", "error": "full"}[overflow]


def frames(
    key: Key = "pixels",
    *,
    skip: int = 1,
    max_frames: int | None = None,
    overflow: str = "drop_newest",
    layout: str | Layout | None = None,
) -> Recorder:
    """Records video frames as uint8 ``[*batch, 3, H, W]`` CPU tensors.

    The frame layout is decided on the first recorded frame (see
    ``funrec.layout``) and cached in the state; every later frame must match it.
    Frames are copied, so an environment that reuses its render buffer does not
    change what was recorded. Skipped and dropped frames are counted, not read.

    Args:
        key: the TensorDict key holding the frames.
        skip: record one frame in ``skip``: the first, the ``skip+1``-th, ...
        max_frames: the most frames held at once (``drain`` empties the buffer),
            or None for no bound.
        overflow: when ``max_frames`` are held: ``"drop_newest"`` drops the new
            frame, ``"drop_oldest"`` drops the oldest held frame, ``"error"`` raises
            :class:`BufferFullError`.
        layout: an order hint (``"HWC"``, ``"CHW"``, ``"HW"``) for ambiguous
            shapes, or a full :class:`Layout` to skip detection.

    Returns:
        A :class:`Recorder` whose state is a :class:`FramesState`.

    Example:
        >>> import torch, funrec
        >>> from tensordict import TensorDict
        >>> rec = funrec.frames("pixels", skip=2)
        >>> td = TensorDict({"pixels": torch.zeros(64, 64, 3, dtype=torch.uint8)})
        >>> state = funrec.fold(rec, [td] * 5)
        >>> funrec.video(state).shape, funrec.counts(state)
        (torch.Size([3, 3, 64, 64]), Counts(seen=5, recorded=3, skipped=2, dropped=0))
    """
    _check_buffer_args(skip, max_frames, overflow, "max_frames")
    hint = layout if isinstance(layout, str) else None
    fixed = layout if isinstance(layout, Layout) else None
    who = f"frames({key!r})"

    def init() -> FramesState:
        return FramesState(layout=fixed)

    def step(state: FramesState, td: TensorDictBase) -> FramesState:
        value = read_key(td, key, who)
        decision = _decide(state, skip, max_frames, overflow, f"{who}: max_frames")
        if decision in ("skip", "drop"):
            return state._replace(counts=_count(state.counts, decision))
        try:
            x = as_tensor(value)
            chosen = state.layout or _detect_first(x, td, hint)
            frame = normalize(x, chosen)
        except LayoutError as err:
            raise LayoutError(f"{who}: {err}{_not_an_image_hint(value, td)}") from err
        items = state.items.append(frame)
        if decision == "evict":
            _, items = items.popleft()
        nonfinite = state.nonfinite + (count_nonfinite(x) if x.is_floating_point() else 0)
        return FramesState(items, _count(state.counts, decision), chosen, nonfinite)

    return Recorder(init, step)


def tensordicts(
    keys: Sequence[Key] | None = None,
    *,
    skip: int = 1,
    max_steps: int | None = None,
    overflow: str = "drop_newest",
) -> Recorder:
    """Records detached CPU copies of the incoming TensorDicts.

    Args:
        keys: the keys to keep (nested keys as tuples), or None for all.
        skip: record one TensorDict in ``skip``: the first, the ``skip+1``-th, ...
        max_steps: the most TensorDicts held at once, or None for no bound.
        overflow: ``"drop_newest"``, ``"drop_oldest"`` or ``"error"``, as in :func:`frames`.

    Returns:
        A :class:`Recorder` whose state is a :class:`TensorDictsState`.

    Example:
        >>> import torch, funrec
        >>> from tensordict import TensorDict
        >>> steps = [TensorDict({"obs": torch.full((4,), float(t)), "t": torch.tensor(t)})
        ...          for t in range(3)]
        >>> funrec.trajectory(funrec.fold(funrec.tensordicts(["obs"]), steps))["obs"][:, 0]
        tensor([0., 1., 2.])
    """
    _check_buffer_args(skip, max_steps, overflow, "max_steps")
    who = f"tensordicts({list(keys) if keys is not None else None!r})"

    def init() -> TensorDictsState:
        return TensorDictsState()

    def step(state: TensorDictsState, td: TensorDictBase) -> TensorDictsState:
        for key in keys or ():
            read_key(td, key, who)
        decision = _decide(state, skip, max_steps, overflow, f"{who}: max_steps")
        if decision in ("skip", "drop"):
            return state._replace(counts=_count(state.counts, decision))
        batch_size = tuple(td.batch_size)
        if state.batch_size is not None and batch_size != state.batch_size:
            raise RecorderError(
                f"{who}: got a TensorDict of batch size {batch_size}, but this stream "
                f"started with batch size {state.batch_size}. Record each batch size with "
                f"its own recorder, or drain and start a new state."
            )
        kept = td.select(*keys) if keys is not None else td
        items = state.items.append(kept.detach().to("cpu").clone())
        if decision == "evict":
            _, items = items.popleft()
        return TensorDictsState(items, _count(state.counts, decision), batch_size)

    return Recorder(init, step)


def episode_stats(
    reward_key: Key = ("next", "reward"), done_key: Key = ("next", "done")
) -> Recorder:
    """Records the return and length of every finished episode, per sub-env.

    In a batched TensorDict each sub-env keeps its own running sums, so
    episodes that end at different steps in different sub-envs are each
    recorded when they end.

    Args:
        reward_key: the key of the reward, shaped ``[*batch]`` or ``[*batch, 1]``.
        done_key: the key of the done flag, shaped like the reward.

    Returns:
        A :class:`Recorder` whose state is an :class:`EpisodeStatsState`; read the
        finished episodes with ``funrec.episodes(state)``.

    Example:
        >>> import torch, funrec
        >>> from tensordict import TensorDict
        >>> step = lambda r, d: TensorDict({"next": {"reward": torch.tensor([r]),
        ...                                          "done": torch.tensor([d])}})
        >>> state = funrec.fold(funrec.episode_stats(), [step(1.0, False), step(2.0, True)])
        >>> funrec.episodes(state)
        (Episode(env=0, total_reward=3.0, length=2),)
    """
    who = "episode_stats()"

    def init() -> EpisodeStatsState:
        return EpisodeStatsState()

    def step(state: EpisodeStatsState, td: TensorDictBase) -> EpisodeStatsState:
        n = td.batch_size.numel()
        rewards = _per_env(read_key(td, reward_key, who), n, reward_key, td, who)
        dones = _per_env(read_key(td, done_key, who), n, done_key, td, who)
        running_reward = state.running_reward or (0.0,) * n
        running_length = state.running_length or (0,) * n
        if len(running_reward) != n:
            raise RecorderError(
                f"{who}: got {n} sub-envs (batch size {tuple(td.batch_size)}), but this "
                f"stream started with {len(running_reward)}. Use one state per batch size."
            )
        episodes = state.episodes
        new_reward, new_length = [], []
        for env, (total, length, r, done) in enumerate(
            zip(running_reward, running_length, rewards.tolist(), dones.tolist(), strict=True)
        ):
            total, length = total + r, length + 1
            if done:
                episodes = episodes.append(Episode(env, total, length))
                total, length = 0.0, 0
            new_reward.append(total)
            new_length.append(length)
        return EpisodeStatsState(
            episodes, tuple(new_reward), tuple(new_length), _count(state.counts, "record")
        )

    return Recorder(init, step)


def read_key(td: TensorDictBase, key: Key, who: str) -> Any:
    """``td[key]``, or a :class:`MissingKeyError` that lists the keys there are."""
    value = td.get(key, None)
    if value is None:
        available = sorted(str(k) for k in td.keys(True, True))
        raise MissingKeyError(
            f"{who}: key {key!r} is not in the TensorDict (batch size "
            f"{tuple(td.batch_size)}, keys: {available}). Pass the key that holds the data."
        )
    return value


def _decide(state: Any, skip: int, capacity: int | None, overflow: str, limit: str) -> str:
    """:func:`admit` for a buffered state; raises :class:`BufferFullError` on ``"full"``."""
    decision = admit(state.counts, len(state.items), skip, capacity, overflow)
    if decision == "full":
        raise BufferFullError(
            f"{limit}={capacity} items are held and overflow='error'. Call "
            f"funrec.drain(state) to write them out, raise the limit, or choose "
            f"overflow='drop_oldest' or 'drop_newest'."
        )
    return decision


def _count(counts: Counts, decision: str) -> Counts:
    seen, recorded, skipped, dropped = counts
    if decision == "skip":
        return Counts(seen + 1, recorded, skipped + 1, dropped)
    if decision in ("drop", "evict"):  # evict: the new item in, the oldest out
        return Counts(seen + 1, recorded, skipped, dropped + 1)
    return Counts(seen + 1, recorded + 1, skipped, dropped)


def _check_buffer_args(skip: int, capacity: int | None, overflow: str, name: str) -> None:
    if not isinstance(skip, int) or skip < 1:
        raise RecorderError(f"skip must be an integer >= 1 (1 records every item), got {skip!r}.")
    if capacity is not None and (not isinstance(capacity, int) or capacity <= 0):
        raise RecorderError(
            f"{name} must be a positive integer or None (no bound), got {capacity!r}."
        )
    if overflow not in OVERFLOW_POLICIES:
        raise RecorderError(f"overflow must be one of {OVERFLOW_POLICIES}, got {overflow!r}.")


def _detect_first(x: torch.Tensor, td: TensorDictBase, hint: str | None) -> Layout:
    if x.dim() - td.batch_dims < 2:
        raise LayoutError(
            f"got shape {tuple(x.shape)} in a TensorDict of batch size {tuple(td.batch_size)}: "
            f"one value per env has fewer than the 2 dims [H, W] of an image"
        )
    return detect(x, hint=hint)


def _not_an_image_hint(value: Any, td: TensorDictBase) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) - td.batch_dims < 2:
        return (
            " This looks like a state vector, not an image: render pixels with "
            "PixelRenderTransform (gymnasium envs need render_mode='rgb_array'), build "
            "the env with from_pixels=True, or record the key that holds the pixels."
        )
    return ""


def _per_env(value: Any, n: int, key: Key, td: TensorDictBase, who: str) -> torch.Tensor:
    value = torch.as_tensor(value)
    if value.numel() != n:
        raise RecorderError(
            f"{who}: key {key!r} has shape {tuple(value.shape)}, but the TensorDict's batch "
            f"size {tuple(td.batch_size)} needs one value per sub-env ({n}). Record a "
            f"per-env scalar (shape [*batch] or [*batch, 1])."
        )
    return value.reshape(n).detach().cpu()
