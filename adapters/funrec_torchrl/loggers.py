"""How a video reaches each TorchRL logger without torchcodec or ``moviepy.editor``.

TorchRL's loggers encode videos themselves: ``CSVLogger(video_format="mp4")``
and ``MLFlowLogger`` through torchcodec, ``TensorboardLogger`` through torch's
``add_video`` (which needs ``moviepy.editor``, gone from moviepy 2, and then
writes nothing), ``WandbLogger`` through moviepy. ``VideoRecorder`` encodes
with funrec's ffmpeg writer instead and hands each logger what it stores:

* ``CSVLogger`` mp4, direct or behind a ``ProcessLogger`` (owner or client):
  frames stream to ``<log_dir>/<exp_name>/videos/<name>_<step>.mp4``
  (:func:`mp4_directory`);
* ``TensorboardLogger``: a GIF image summary in the event file, as
  ``add_video`` writes it;
* ``MLFlowLogger``: the mp4 as a run artifact under ``videos/``;
* ``WandbLogger``: a ``wandb.Video`` made from the mp4 file;
* any other logger (``CSVLogger`` pt/memmap, services, duck-typed ones):
  ``log_video(name=, video=uint8 [1, T, 3, H, W], step=, **kwargs)``.
"""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path
from typing import Any

import torch
from torchrl.record.loggers.csv import CSVLogger
from torchrl.record.loggers.mlflow import MLFlowLogger
from torchrl.record.loggers.tensorboard import TensorboardLogger
from torchrl.record.loggers.wandb import WandbLogger

from funrec import RecorderError
from funrec.writers import open_video


def mp4_directory(logger: Any) -> Path | None:
    """Where funrec streams mp4 files for ``logger``, or None when it does not.

    A ``CSVLogger(video_format="mp4")`` writes ``<log_dir>/<exp_name>/videos``.
    So does one running as a logger service: the ``ProcessLogger`` owner
    knows its logger's class and arguments; a client (``owner.client()``, as
    the ``Evaluator(backend="process")`` workflow passes) asks the service
    process for its ``video_format`` once. The files are written by the
    recorder's process, next to where the service would have put them.

    Args:
        logger: what the ``VideoRecorder`` was given (before ``client()``).

    Returns:
        The videos directory, or None to send videos through ``log_video``.
    """
    if isinstance(logger, CSVLogger):  # also True for a ProcessLogger owner of a CSVLogger
        service = getattr(logger, "_service_cls", None)
        if service is None:  # a CSVLogger in this process
            if logger.video_format != "mp4":
                return None
            return Path(logger.experiment.log_dir) / "videos"
        if _bound_argument(service, logger, "video_format", "pt") != "mp4":
            return None
        return Path(logger.log_dir) / logger.exp_name / "videos"
    if _is_service_client(logger) and _service_attribute(logger, "video_format") == "mp4":
        return Path(logger.log_dir) / logger.exp_name / "videos"
    return None


def video_fps(logger: Any) -> float:
    """The ``video_fps`` of ``logger`` (or of the logger its service runs), else 30.

    Args:
        logger: what the ``VideoRecorder`` was given (before ``client()``).

    Returns:
        The frame rate the logger writes videos at when the recorder sets none.
    """
    service = getattr(logger, "_service_cls", None)
    if service is not None:
        fps = _bound_argument(service, logger, "video_fps", None)
    elif _is_service_client(logger):
        fps = _service_attribute(logger, "video_fps")
    else:
        fps = getattr(logger, "video_fps", None)
    return fps or 30


def log_video(
    logger: Any, name: str | None, video: torch.Tensor, step: int, fps: float | None, **kwargs: Any
) -> None:
    """Hands ``video`` (uint8 ``[1, T, 3, H, W]``) to ``logger`` as that logger stores it.

    Args:
        logger: a TorchRL logger or anything with ``log_video``.
        name: the video's name (``None`` passes through to ``log_video``).
        video: the frames.
        step: the step to log at.
        fps: frames per second; None for the logger's default (TorchRL's: the
            logger's ``video_fps``, 4 for TensorBoard as in torch's ``add_video``).
        **kwargs: the recorder's extra ``log_video`` arguments.
    """
    if _is_service(logger) or not isinstance(
        logger, (TensorboardLogger, MLFlowLogger, WandbLogger)
    ):
        if fps is not None:
            kwargs["fps"] = fps
        logger.log_video(name=name, video=video, step=step, **kwargs)
    elif isinstance(logger, TensorboardLogger):
        check_arguments(logger, kwargs)
        _tensorboard(logger, name, video, step, 4 if fps is None else fps)
    elif isinstance(logger, MLFlowLogger):
        check_arguments(logger, kwargs)
        _mlflow(logger, name, video, step, fps or logger.video_fps)
    else:
        check_arguments(logger, kwargs)
        _wandb(logger, name, video, step, fps or logger.video_fps, kwargs)


def check_arguments(logger: Any, kwargs: dict[str, Any]) -> None:
    """Raises when funrec's encoder for ``logger`` cannot honour ``kwargs`` (fps aside).

    Args:
        logger: the recorder's logger.
        kwargs: the recorder's ``log_video`` keyword arguments.

    Raises:
        RecorderError: naming the arguments and what funrec takes instead.
    """
    kwargs = {k: v for k, v in kwargs.items() if k != "fps"}
    if _is_service(logger):
        return
    if isinstance(logger, (TensorboardLogger, MLFlowLogger)) and kwargs:
        raise RecorderError(
            f"VideoRecorder with a {type(logger).__name__}: {sorted(kwargs)} cannot be passed "
            "on; funrec encodes the video itself (no torchcodec, no moviepy) and takes only fps=."
        )
    if isinstance(logger, WandbLogger) and kwargs.get("format", "mp4") != "mp4":
        raise RecorderError(
            f"VideoRecorder with a WandbLogger: format={kwargs['format']!r}; funrec writes mp4 "
            "through its ffmpeg writer. Other formats need TorchRL's own VideoRecorder (and "
            "moviepy, which wandb encodes with)."
        )


def _encode(video: torch.Tensor, path: Path, fps: float) -> Path:
    with open_video(path, fps=fps) as writer:
        writer.write(video[0])
    return path


def _tensorboard(
    logger: TensorboardLogger, name: str | None, video: torch.Tensor, step: int, fps: float
) -> None:
    from tensorboard.compat.proto.summary_pb2 import Summary

    _, _, channels, height, width = video.shape
    with tempfile.TemporaryDirectory() as tmp:
        gif = _encode(video, Path(tmp) / "video.gif", fps).read_bytes()
    image = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=gif)
    writer = logger.experiment
    writer._get_file_writer().add_summary(
        Summary(value=[Summary.Value(tag=name, image=image)]), step
    )


def _mlflow(
    logger: MLFlowLogger,
    name: str | None,
    video: torch.Tensor,
    step: int,
    fps: float,
) -> None:
    import mlflow

    mlflow.set_experiment(experiment_id=logger.id)
    logger.video_log_counter += 1
    filename = f"{name}_step_{step:04}.mp4" if step else f"{name}.mp4"
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.log_artifact(str(_encode(video, Path(tmp) / filename, fps)), "videos")


def _wandb(
    logger: WandbLogger,
    name: str | None,
    video: torch.Tensor,
    step: int,
    fps: float,
    kwargs: dict[str, Any],
) -> None:
    import wandb

    kwargs = dict(kwargs)
    kwargs.pop("format", None)
    with tempfile.TemporaryDirectory() as tmp:
        clip = wandb.Video(str(_encode(video, Path(tmp) / f"{name}.mp4", fps)), format="mp4")
        # TorchRL's WandbLogger.log_video logs through _log_payload (its step bookkeeping).
        logger._log_payload(
            {name: clip},
            step=step,
            override_global_step=kwargs.pop("override_global_step", False),
            **kwargs,
        )


def _is_service(logger: Any) -> bool:
    """True for a ``ProcessLogger``/``RayLogger`` owner (the logger runs elsewhere)."""
    return getattr(logger, "_service_cls", None) is not None


def _is_service_client(logger: Any) -> bool:
    from torchrl.record.loggers._service import _LoggerClient

    return isinstance(logger, _LoggerClient)


def _service_attribute(client: Any, name: str) -> Any:
    """An attribute of the logger a service client talks to, or None."""
    try:
        return client._submit("__getattribute__", (name,), {}, wait=True)
    except Exception:  # the service's logger has no such attribute, or is not reachable
        return None


def _bound_argument(cls: type, owner: Any, name: str, default: Any) -> Any:
    """The value ``owner``'s service gave ``cls(...)`` for the argument ``name``."""
    args = getattr(owner, "_logger_args", ())
    kwargs = getattr(owner, "_logger_kwargs", {})
    try:  # __init__'s own signature: the metaclass' __call__ takes (*args, **kwargs)
        bound = inspect.signature(cls.__init__).bind_partial(None, *args, **kwargs)
    except TypeError:
        return default
    return bound.arguments.get(name, default)
