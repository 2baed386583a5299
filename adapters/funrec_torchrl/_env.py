"""Glue between TorchRL environments and funrec recorders, shared by the transforms."""

from __future__ import annotations

import atexit
import gc
import multiprocessing.util
import sys
from copy import copy
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.envs import EnvBase, ParallelEnv, SerialEnv, TransformedEnv, batched_envs
from torchrl.envs.batched_envs import BatchedEnvBase

_BATCHED_FILE = batched_envs.__file__

RESET_MARK = "_funrec_reset"
"""Key under which the transforms hand a reset TensorDict to their recorder.

It holds a bool mask over the batch: which sub-envs this reset started anew
(all of them for a full reset). Step TensorDicts do not carry it, so recorders
tell resets from steps, and partial resets from full ones, by reading it.
"""


def mark_reset(
    tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase
) -> TensorDictBase:
    """A shallow copy of ``tensordict_reset`` carrying the :data:`RESET_MARK` mask.

    Args:
        tensordict: what TorchRL passed to ``Transform._reset`` (holds ``"_reset"``
            on a partial reset of a batched env).
        tensordict_reset: the TensorDict the reset produced.

    Returns:
        A new TensorDict sharing ``tensordict_reset``'s tensors, plus the mask.
    """
    mask = tensordict.get("_reset", None) if tensordict is not None else None
    if mask is None:
        mask = torch.ones(tensordict_reset.batch_size, dtype=torch.bool)
    marked = tensordict_reset.copy()
    marked.set(RESET_MARK, mask.reshape(*tensordict_reset.batch_size, -1).any(-1))
    return marked


def is_step(td: TensorDictBase) -> bool:
    """True for a step TensorDict, False for a reset one."""
    return td.get(RESET_MARK, None) is None


def resets_all(td: TensorDictBase) -> bool:
    """True for a step, or a reset that restarts every sub-env."""
    mask = td.get(RESET_MARK, None)
    return mask is None or bool(mask.all())


def resets_env(index: int) -> Any:
    """A predicate: true for a step, or a reset that restarts sub-env ``index`` (flat)."""

    def predicate(td: TensorDictBase) -> bool:
        mask = td.get(RESET_MARK, None)
        return mask is None or bool(mask.reshape(-1)[index])

    return predicate


def pick_env(index: int) -> Any:
    """A TensorDict -> TensorDict function taking sub-env ``index`` (flat) of a batch."""
    return lambda td: td.reshape(-1)[index]


def render_fps(env: EnvBase | None) -> float | None:
    """The env's ``metadata["render_fps"]`` (gymnasium), or None when it has none.

    A batched env (``SerialEnv``/``ParallelEnv``) answers with its sub-envs'
    frame rate when they all agree (a started ParallelEnv asks its workers).

    Args:
        env: the transform's parent env (transforms are looked through).

    Returns:
        The frame rate the env renders at, or None (envs without metadata,
        sub-envs that disagree, a batched env that is not started).
    """
    env = _unwrap(env)
    if env is None:
        return None
    try:
        if isinstance(env, BatchedEnvBase):
            if env.is_closed:
                return None
            metadata = list(env.metadata)  # one entry per sub-env
        else:
            metadata = [env.metadata]
    except Exception:  # TorchRL envs forward unknown attributes to their backend
        return None
    rates = {m.get("render_fps") if isinstance(m, dict) else None for m in metadata}
    fps = rates.pop() if len(rates) == 1 else None
    return float(fps) if fps else None


def worker_index() -> int | None:
    """The index of the batched-env worker whose env is being built, else None.

    TorchRL does not tell a worker env its index, so it is read from the call
    stack of TorchRL's own worker set-up: a ``ParallelEnv`` worker process
    builds its env inside its worker function (argument ``worker_idx``), a
    ``SerialEnv`` builds its envs in ``_start_workers`` (loop index ``idx``).
    Call it while the env is being built (a transform's constructor).
    """
    frame = sys._getframe(1)
    while frame is not None:
        code, local = frame.f_code, frame.f_locals
        if code.co_filename == _BATCHED_FILE:
            if code.co_name.startswith("_run_worker") and local.get("worker_idx") is not None:
                return int(local["worker_idx"])
            if code.co_name == "_start_workers" and isinstance(local.get("self"), SerialEnv):
                return int(local["idx"]) if "idx" in local else None
        frame = frame.f_back
    return None


def detached_copy(transform: Any) -> Any:
    """A shallow copy of a transform, out of its env, made without pickling.

    ``Transform.clone`` copies through ``__getstate__``, which a recorder that
    is writing files refuses; the recorders build their ``clone()`` on this
    and then reset what must not be shared (held items, open writers).

    Args:
        transform: an ``nn.Module`` transform.

    Returns:
        A new instance whose ``__dict__`` is a copy of ``transform``'s, with
        its own module/parameter/buffer tables and no container or parent.
    """
    clone = type(transform).__new__(type(transform))
    state = dict(transform.__dict__)
    for name in ("_parameters", "_buffers", "_modules"):
        state[name] = copy(state[name])
    state.update(_container=None, _parent=None)
    clone.__dict__.update(state)
    return clone


def stop_orphaned_workers() -> None:
    """Terminates the ParallelEnv workers still running when Python exits.

    TorchRL 0.14 leaves ParallelEnv workers waiting on their pipe when a script
    ends or raises (a dead worker, a bad frame) without ``env.close()``, and
    multiprocessing then joins them forever at exit. This is registered with
    ``atexit`` when funrec_torchrl is imported, so it runs before
    multiprocessing's own exit handler: the script exits with its error
    instead of hanging. Workers of closed envs are gone already.
    """
    for obj in gc.get_objects():
        if issubclass(type(obj), ParallelEnv):
            for process in obj.__dict__.get("_workers") or ():
                if process.is_alive():
                    process.terminate()
                    process.join(timeout=2)
                if process.is_alive():  # SDL (pygame rendering) catches SIGTERM
                    process.kill()
                    process.join()


multiprocessing.util  # noqa: B018 - its exit handler is registered on import: ours runs first
atexit.register(stop_orphaned_workers)


def _unwrap(env: EnvBase | None) -> EnvBase | None:
    # isinstance, not hasattr: a batched env forwards unknown attributes to its workers.
    while isinstance(env, TransformedEnv):
        env = env.base_env
    return env
