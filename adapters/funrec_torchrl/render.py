"""``PixelRenderTransform``: puts ``env.render()`` into every TensorDict, single or batched."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tensordict import NonTensorData, TensorDictBase
from tensordict.utils import NestedKey
from torchrl._utils import _can_be_pickled
from torchrl.data.tensor_specs import NonTensor, TensorSpec, Unbounded
from torchrl.data.utils import CloudpickleWrapper
from torchrl.envs import EnvBase
from torchrl.envs.batched_envs import BatchedEnvBase
from torchrl.envs.transforms import Transform
from torchrl.record import PixelRenderTransform as TorchRLPixelRenderTransform

from funrec_torchrl._env import _unwrap


class PixelRenderTransform(TorchRLPixelRenderTransform):
    """Calls the parent env's ``render`` after each reset and step and stores the image.

    A drop-in for (and a subclass of) TorchRL's transform that works in the three places TorchRL's
    documentation shows: on a single env, inside ``ParallelEnv`` workers (one
    image per worker, stacked by the ParallelEnv), and appended to an outer
    ``ParallelEnv``/``SerialEnv``, whose ``render()`` returns one image per
    worker: those are stacked into one ``[B, H, W, C]`` tensor.

    Args:
        out_keys: the key to write the image under; defaults to ``["pixels"]``.
        preproc: applied to what ``render`` returns before it is stored.
        as_non_tensor: store the image as ``NonTensorData`` (no shape
            constraint). If None, decided on the first render: a tensor when the
            image's leading dims match the env's batch size, else non-tensor
            (e.g. one image for a whole batched env).
        render_method: the name of the parent env's render method.
        pass_tensordict: pass the TensorDict to the render method (stateless envs).
        **kwargs: keyword arguments for the render method.

    Example:
        >>> from torchrl.envs import GymEnv, ParallelEnv
        >>> from funrec_torchrl import PixelRenderTransform
        >>> make_env = lambda: GymEnv("CartPole-v1", render_mode="rgb_array")
        >>> env = ParallelEnv(4, make_env).append_transform(
        ...     PixelRenderTransform())  # doctest: +SKIP
        >>> env.rollout(3)["pixels"].shape  # doctest: +SKIP
        torch.Size([4, 3, 400, 600, 3])
    """

    def __init__(
        self,
        out_keys: list[NestedKey] | None = None,
        preproc: Callable[[Any], Any] | None = None,
        as_non_tensor: bool | None = None,
        render_method: str = "render",
        pass_tensordict: bool = False,
        **kwargs: Any,
    ) -> None:
        if out_keys is None:
            out_keys = ["pixels"]
        elif isinstance(out_keys, (str, tuple)):
            out_keys = [out_keys]
        if len(out_keys) != 1:
            raise RuntimeError(
                f"PixelRenderTransform writes one key; got out_keys={out_keys}. Use one "
                "transform per render method."
            )
        if preproc is not None and not _can_be_pickled(preproc):
            preproc = CloudpickleWrapper(preproc)
        # TorchRL's __init__ is replaced, not extended: the base Transform's is the one needed.
        Transform.__init__(self, in_keys=[], out_keys=out_keys)
        self.preproc = preproc
        self.as_non_tensor = as_non_tensor
        self.render_method = render_method
        self.pass_tensordict = pass_tensordict
        self.kwargs = kwargs
        self._enabled = True

    def _reset(
        self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase
    ) -> TensorDictBase:
        return self._call(tensordict_reset)

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        if not self._enabled:
            return next_tensordict
        image = self._render(next_tensordict)
        if self.as_non_tensor:
            next_tensordict.set_non_tensor(self.out_keys[0], image)
        else:
            next_tensordict.set(self.out_keys[0], image)
        return next_tensordict

    def _render(self, td: TensorDictBase) -> Any:
        """What the render method returns, preprocessed, as a tensor unless non-tensor."""
        parent = self.parent
        method = getattr(parent, self.render_method)
        image = method(td, **self.kwargs) if self.pass_tensordict else method(**self.kwargs)
        if self.preproc is not None:
            image = self.preproc(image)
        batch = tuple(parent.batch_size)
        if self.as_non_tensor:
            return image
        tensor = _as_tensor(image)
        if self.as_non_tensor is None:
            self.as_non_tensor = tensor is None or tuple(tensor.shape[: len(batch)]) != batch
            if self.as_non_tensor:
                return image
        if tensor is None or tuple(tensor.shape[: len(batch)]) != batch:
            raise RuntimeError(
                f"PixelRenderTransform: {self.render_method}() gave "
                f"{type(image).__name__} of shape {getattr(tensor, 'shape', None)}, which does "
                f"not start with the env's batch size {batch}. Reshape it with preproc=, or "
                "store it as NonTensorData with as_non_tensor=True."
            )
        return tensor

    def transform_observation_spec(self, observation_spec: TensorSpec) -> TensorSpec:
        """Adds the image's spec, learnt by resetting the parent env and rendering once."""
        parent = self.parent
        td = parent.reset()
        enabled, self._enabled = self._enabled, True
        try:
            image = self._call(td).get(self.out_keys[0])
        finally:
            self._enabled = enabled
        if isinstance(image, NonTensorData) or not isinstance(image, torch.Tensor):
            spec = NonTensor(shape=parent.batch_size, device=observation_spec.device)
        else:
            spec = Unbounded(shape=image.shape, dtype=image.dtype, device=observation_spec.device)
        observation_spec[self.out_keys[0]] = spec
        return observation_spec

    def switch(self, mode: str | bool | None = None) -> None:
        """Turns rendering on or off (``"on"``/``"off"``/bool), or flips it when None."""
        if mode is None:
            mode = not self._enabled
        if not isinstance(mode, bool):
            if mode not in ("on", "off"):
                raise ValueError(f"mode must be 'on', 'off', True or False, got {mode!r}.")
            mode = mode == "on"
        self._enabled = mode

    @property
    def enabled(self) -> bool:
        """Whether rendering is on."""
        return self._enabled

    def set_container(self, container: Transform | EnvBase) -> None:
        Transform.set_container(self, container)  # funrec's check below, not TorchRL's
        parent = self.parent
        base = _unwrap(parent)
        if isinstance(base, BatchedEnvBase) and base.is_closed:
            raise RuntimeError(
                f"PixelRenderTransform: the {type(base).__name__} is not started, so its "
                f"workers' {self.render_method!r} cannot be reached (TorchRL recurses forever "
                "looking for it). Call env.start() before appending the transform."
            )
        if isinstance(parent, EnvBase):
            method = getattr(parent, self.render_method, None)
            if not callable(method):
                raise ValueError(
                    f"PixelRenderTransform: the parent env has no callable "
                    f"{self.render_method!r} (got {method!r}). Build the env with a render "
                    "mode, e.g. GymEnv(..., render_mode='rgb_array'), or pass render_method=."
                )


def _as_tensor(image: Any) -> torch.Tensor | None:
    """A fresh tensor from an image, a list of images (one per sub-env), or None."""
    if isinstance(image, (list, tuple)):
        parts = [_as_tensor(part) for part in image]
        if not parts or any(p is None for p in parts) or len({p.shape for p in parts}) > 1:
            return None
        return torch.stack(parts)
    if isinstance(image, torch.Tensor):
        return image.detach().clone()
    if isinstance(image, np.ndarray) and image.dtype != object:
        return torch.from_numpy(np.array(image))
    return None
