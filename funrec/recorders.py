"""The built-in recorders: video frames, TensorDict steps, episode statistics.

Each holds its items in a persistent queue (O(1) append, shared structure) and
admits them by :func:`funrec.rules.admit`; ``skip=n`` is the gate
:func:`funrec.every` in front of the recorder, so both count the same way.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from tensordict import TensorDictBase

from funrec import images, rules
from funrec._queue import Queue, Storage
from funrec.combinators import every
from funrec.errors import BufferFullError, RecorderError
from funrec.images import Size, size_pair
from funrec.layout import (
    Layout,
    LayoutError,
    as_tensor,
    check_hint,
    detect,
    normalize,
    out_of_range,
    scale_warning,
)
from funrec.recorder import Counts, Key, Recorder, read_key


class FramesState(NamedTuple):
    """State of :func:`frames`.

    Attributes:
        items: the frames held, uint8 ``[*batch, 3, H, W]`` CPU tensors, oldest first.
        counts: what happened to every frame seen.
        layout: the input layout, decided on the first frame (or given, or from
            ``init(example)``), else None.
        nonfinite: NaN and infinite values met in float frames (NaN became 0, inf was clipped).
        clipped: finite values of float frames outside [0, 255] once scaled, clipped.
    """

    items: Storage = Queue()
    counts: Counts = Counts()
    layout: Layout | None = None
    nonfinite: int = 0
    clipped: int = 0


class TensorDictsState(NamedTuple):
    """State of :func:`tensordicts`.

    Attributes:
        items: detached CPU copies of the recorded TensorDicts, oldest first.
        counts: what happened to every TensorDict seen.
        batch_size: the batch size of the stream (first TensorDict or example), else None.
    """

    items: Storage = Queue()
    counts: Counts = Counts()
    batch_size: tuple[int, ...] | None = None


class Episode(NamedTuple):
    """One finished episode.

    Attributes:
        env: flat index of the sub-environment in the batch (0 when unbatched).
        total_reward: the sum of the episode's rewards (its undiscounted return).
        length: the number of steps of the episode.
        origin: where it was recorded, e.g. ``"worker1"``: ``""`` in the process
            that folded it, until :func:`funrec.with_origin` marks it (as
            ``funrec_torchrl.gather`` does for each worker) so that episodes
            merged from many workers stay apart.
    """

    env: int
    total_reward: float
    length: int
    origin: str = ""

    def __repr__(self) -> str:
        origin = f", origin={self.origin!r}" if self.origin else ""  # shown once marked
        fields = f"env={self.env}, total_reward={self.total_reward}, length={self.length}"
        return f"Episode({fields}{origin})"


class EpisodeStatsState(NamedTuple):
    """State of :func:`episode_stats`.

    Attributes:
        items: finished episodes, in the order they finished.
        counts: what happened to every finished episode (they are the items).
        running_reward: per sub-env, the reward summed so far in the current episode.
        running_length: per sub-env, the steps so far in the current episode.
        reward_key: the reward key of the stream, decided on its first step (or
            from ``init(example)``), else None.
        done_keys: its done keys, decided likewise.
    """

    items: Storage = Queue()
    counts: Counts = Counts()
    running_reward: tuple[float, ...] = ()
    running_length: tuple[int, ...] = ()
    reward_key: Key | None = None
    done_keys: tuple[Key, ...] | None = None


def frames(
    key: Key = "pixels",
    *,
    skip: int = 1,
    max_frames: int | None = None,
    overflow: str = "drop_newest",
    layout: str | Layout | None = None,
    crop: Size | None = None,
    resize: Size | None = None,
) -> Recorder:
    """Records video frames as uint8 ``[*batch, 3, H, W]`` CPU tensors.

    The frame layout is decided on the first frame (see ``funrec.layout``), or
    by ``init(example)``, and cached in the state; every later frame must match
    it. A float stream whose first frame leaves its scale in doubt is warned
    about once. Frames are cropped and resized before they are held, and copied,
    so an environment that reuses its render buffer does not change what was
    recorded. Skipped and dropped frames are counted, not read.

    Args:
        key: the TensorDict key holding the frames.
        skip: record one frame in ``skip``: the first, the ``skip+1``-th, ...
            (the gate :func:`funrec.every` in front of the recorder).
        max_frames: the most frames held at once (``drain`` empties the buffer),
            or None for no bound.
        overflow: when ``max_frames`` are held: ``"drop_newest"`` drops the new
            frame, ``"drop_oldest"`` drops the oldest held frame, ``"error"`` raises
            :class:`BufferFullError`.
        layout: an order hint (``"HWC"``, ``"CHW"``, ``"HW"``) for ambiguous
            shapes, or a full :class:`Layout` to skip detection.
        crop: a center crop, ``h`` or ``(h, w)``, as torchvision's ``center_crop``.
        resize: a size, ``s`` or ``(h, w)``, to resize frames to (after the crop).

    Returns:
        A :class:`Recorder` whose state is a :class:`FramesState` (inside a
        gate's state when ``skip > 1``).

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
    hint = check_hint(layout)
    crop_size = size_pair(crop, "crop") if crop is not None else None
    new_size = size_pair(resize, "resize") if resize is not None else None
    who = f"frames({key!r})"

    def first_layout(value: Any, td: TensorDictBase) -> Layout:
        try:
            return decide(as_tensor(value), td)
        except LayoutError as err:
            raise LayoutError(f"{who}: {err}{_not_an_image_hint(value, td)}") from err

    def decide(x: torch.Tensor, td: TensorDictBase) -> Layout:
        if isinstance(hint, Layout):
            return detect(x, hint)
        if x.dim() - td.batch_dims < 2:
            raise LayoutError(
                f"got shape {tuple(x.shape)} in a TensorDict of batch size "
                f"{tuple(td.batch_size)}: one value per env has fewer than the 2 dims [H, W] "
                "of an image"
            )
        chosen = detect(x, hint=hint)
        message = scale_warning(x, chosen, key)
        if message is not None:
            warnings.warn(f"{who}: {message}", RuntimeWarning, stacklevel=4)
        return chosen

    def convert(value: Any, chosen: Layout) -> tuple[torch.Tensor, tuple[int, int]]:
        x = as_tensor(value)
        if crop_size is None:
            frame = normalize(x, chosen)
        else:
            image = x.movedim(-1, -3) if chosen.order == "HWC" else x  # [..., (C,) H, W]
            window = images.center_crop(image, crop_size)
            order = "CHW" if chosen.order == "HWC" else chosen.order
            frame = normalize(
                window,
                dataclasses.replace(chosen, order=order, height=crop_size[0], width=crop_size[1]),
            )
        if new_size is not None:
            frame = images.resize(frame, new_size)
        return frame, (out_of_range(x, chosen) if x.is_floating_point() else (0, 0))

    def init(example: TensorDictBase | None = None) -> FramesState:
        if example is None:
            return FramesState(layout=hint if isinstance(hint, Layout) else None)
        return FramesState(layout=first_layout(read_key(example, key, who), example))

    limit = f"{who}: max_frames"

    def step(state: FramesState, td: TensorDictBase) -> FramesState:
        value = read_key(td, key, who)
        admission = _admit(state.items, max_frames, overflow, limit)
        if not admission.record:
            return state._replace(counts=rules.count(state.counts, admission))
        chosen = state.layout or first_layout(value, td)
        try:
            frame, (nonfinite, clipped) = convert(value, chosen)
        except LayoutError as err:
            raise LayoutError(f"{who}: {err}{_not_an_image_hint(value, td)}") from err
        return FramesState(
            _keep(state.items, admission, frame),
            rules.count(state.counts, admission),
            chosen,
            state.nonfinite + nonfinite,
            state.clipped + clipped,
        )

    recorder = Recorder(init, step)
    return recorder if skip == 1 else every(skip, recorder)


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
        A :class:`Recorder` whose state is a :class:`TensorDictsState` (inside a
        gate's state when ``skip > 1``).

    Example:
        >>> import torch, funrec
        >>> from tensordict import TensorDict
        >>> steps = [TensorDict({"obs": torch.full((4,), float(t)), "t": torch.tensor(t)})
        ...          for t in range(3)]
        >>> funrec.trajectory(funrec.fold(funrec.tensordicts(["obs"]), steps))["obs"][:, 0]
        tensor([0., 1., 2.])
    """
    _check_buffer_args(skip, max_steps, overflow, "max_steps")
    if isinstance(keys, str):
        raise RecorderError(f"tensordicts(keys): pass a list of keys, e.g. [{keys!r}].")
    who = f"tensordicts({list(keys) if keys is not None else None!r})"

    def init(example: TensorDictBase | None = None) -> TensorDictsState:
        batch = tuple(example.batch_size) if example is not None else None
        return TensorDictsState(batch_size=batch)

    def step(state: TensorDictsState, td: TensorDictBase) -> TensorDictsState:
        for key in keys or ():
            read_key(td, key, who)
        admission = _admit(state.items, max_steps, overflow, f"{who}: max_steps")
        if not admission.record:
            return state._replace(counts=rules.count(state.counts, admission))
        batch_size = tuple(td.batch_size)
        if state.batch_size is not None and batch_size != state.batch_size:
            raise RecorderError(
                f"{who}: got a TensorDict of batch size {batch_size}, but this stream "
                f"started with batch size {state.batch_size}. Record each batch size with "
                f"its own recorder, or drain and start a new state."
            )
        kept = td.select(*keys) if keys is not None else td
        items = _keep(state.items, admission, kept.detach().to("cpu").clone())
        return TensorDictsState(items, rules.count(state.counts, admission), batch_size)

    recorder = Recorder(init, step)
    return recorder if skip == 1 else every(skip, recorder)


def episode_stats(
    reward_key: Key | None = None,
    done_key: Key | None = None,
    *,
    max_episodes: int | None = None,
    overflow: str = "drop_newest",
) -> Recorder:
    """Records the return and length of every finished episode, per sub-env.

    In a batched TensorDict each sub-env keeps its own running sums
    (:func:`funrec.rules.episode_step`), so episodes that end at different
    steps in different sub-envs are each recorded when they end. The items of
    this recorder are finished episodes: they are what it counts and drains.

    Args:
        reward_key: the key of the reward, shaped ``[*batch]`` or ``[*batch, 1]``;
            None reads ``("next", "reward")`` from a transition, else ``"reward"``.
        done_key: the done key to read; None reads every done key
            (:func:`funrec.rules.done_flags`).
        max_episodes: the most episodes held at once, or None for no bound.
        overflow: ``"drop_newest"``, ``"drop_oldest"`` or ``"error"``, as in :func:`frames`.

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
    _check_buffer_args(1, max_episodes, overflow, "max_episodes")
    who = "episode_stats()"

    def keys_of(td: TensorDictBase) -> tuple[Key, tuple[Key, ...]]:
        """The reward key and the done keys of a stream, decided once."""
        reward = reward_key or (("next", "reward") if "next" in td else "reward")
        return reward, (done_key,) if done_key is not None else rules.done_keys(td)

    def init(example: TensorDictBase | None = None) -> EpisodeStatsState:
        if example is None:
            return EpisodeStatsState()
        n = example.batch_size.numel()
        return EpisodeStatsState(Queue(), Counts(), (0.0,) * n, (0,) * n, *keys_of(example))

    def step(state: EpisodeStatsState, td: TensorDictBase) -> EpisodeStatsState:
        n = td.batch_size.numel()
        if state.reward_key is None or state.done_keys is None:
            key, done_keys = keys_of(td)
        else:
            key, done_keys = state.reward_key, state.done_keys
        rewards = _per_env(read_key(td, key, who), n, key, td, who).tolist()
        dones = rules.done_flags(td, done_keys).reshape(n).tolist()
        running_reward = state.running_reward or (0.0,) * n
        running_length = state.running_length or (0,) * n
        if len(running_reward) != n:
            raise RecorderError(
                f"{who}: got {n} sub-envs (batch size {tuple(td.batch_size)}), but this "
                f"stream started with {len(running_reward)}. Use one state per batch size."
            )
        items, counts = state.items, state.counts
        totals, lengths = [], []
        for env in range(n):
            ended_total, ended_length, total, length = rules.episode_step(
                running_reward[env], running_length[env], rewards[env], dones[env]
            )
            if dones[env]:
                admission = _admit(items, max_episodes, overflow, f"{who}: max_episodes")
                if admission.record:
                    items = _keep(items, admission, Episode(env, ended_total, ended_length))
                counts = rules.count(counts, admission)
            totals.append(total)
            lengths.append(length)
        return EpisodeStatsState(items, counts, tuple(totals), tuple(lengths), key, done_keys)

    return Recorder(init, step)


_UNBOUNDED = {policy: rules.admit(0, None, policy) for policy in rules.OVERFLOW_POLICIES}


def _admit(items: Storage, capacity: int | None, overflow: str, limit: str) -> rules.Admission:
    """:func:`rules.admit` for a buffer; raises :class:`BufferFullError` when it says full."""
    if capacity is None:  # the same admission for every item: decided once
        return _UNBOUNDED[overflow]
    admission = rules.admit(len(items), capacity, overflow)
    if admission.full:
        raise BufferFullError(
            f"{limit}={capacity} items are held and overflow='error'. Call "
            f"funrec.drain(state) to write them out, raise the limit, or choose "
            f"overflow='drop_oldest' or 'drop_newest'."
        )
    return admission


def _keep(items: Storage, admission: rules.Admission, item: Any) -> Storage:
    """``items`` with ``item`` appended, and the oldest evicted if ``admission`` says so."""
    items = items.append(item)
    if admission.evict:
        _, items = items.popleft()
    return items


def _check_buffer_args(skip: int, capacity: int | None, overflow: str, name: str) -> None:
    if not isinstance(skip, int) or isinstance(skip, bool) or skip < 1:
        raise RecorderError(f"skip must be an integer >= 1 (1 records every item), got {skip!r}.")
    if capacity is not None and (
        not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0
    ):
        raise RecorderError(
            f"{name} must be a positive integer or None (no bound), got {capacity!r}."
        )
    if overflow not in rules.OVERFLOW_POLICIES:
        raise RecorderError(
            f"overflow must be one of {rules.OVERFLOW_POLICIES}, got {overflow!r}."
        )


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
