"""Every TorchRL logger receives funrec_torchrl.VideoRecorder's videos, and the files decode.

TensorBoard, MLflow and wandb (offline) run for real and write their own files;
the mp4 CSVLogger also behind a ProcessLogger (owner and client) and through
``Evaluator(backend="process")``. None of it needs torchcodec or ``moviepy.editor``.
"""

from __future__ import annotations

import io
from functools import partial
from pathlib import Path

import pytest
import torch
from funrec_torchrl import VideoRecorder
from PIL import Image, ImageSequence
from tensordict.nn import TensorDictModule
from test_torchrl_envs import HEIGHT, WIDTH, StampEnv, counter_of
from torchrl.collectors import Evaluator
from torchrl.envs import TransformedEnv
from torchrl.record.loggers import CSVLogger
from torchrl.record.loggers.mlflow import MLFlowLogger
from torchrl.record.loggers.process import ProcessLogger
from torchrl.record.loggers.tensorboard import TensorboardLogger
from torchrl.record.loggers.wandb import WandbLogger

from funrec import RecorderError
from funrec.writers import read_video


def record(logger, steps: int = 5, **kwargs) -> TransformedEnv:
    """Rolls a StampEnv out ``steps`` steps under a VideoRecorder and dumps it."""
    env = TransformedEnv(StampEnv(), VideoRecorder(logger, "run", **kwargs))
    env.rollout(steps)
    env.transform.dump()
    return env


def assert_stamped(video: torch.Tensor, n: int, tolerance: int = 4) -> None:
    """``video`` holds StampEnv's frames 0..n-1 (lossy codecs: counters to a few levels)."""
    assert video.shape == (n, 3, HEIGHT, WIDTH)
    assert all(abs(counter_of(f) - i) <= tolerance for i, f in enumerate(video)), [
        counter_of(f) for f in video
    ]


def test_csv_logger_pt_gets_the_exact_frames(tmp_path):
    logger = CSVLogger("exp", log_dir=str(tmp_path), video_format="pt")
    record(logger)
    video = torch.load(tmp_path / "exp" / "videos" / "run_0.pt", weights_only=True)
    assert video.shape == (1, 6, 3, HEIGHT, WIDTH) and video.dtype == torch.uint8
    assert [counter_of(f) for f in video[0]] == list(range(6))


def test_csv_logger_mp4_is_written_without_torchcodec(tmp_path):
    with pytest.raises(ModuleNotFoundError):
        import torchcodec  # noqa: F401 - the point: it is not installed here
    logger = CSVLogger("exp", log_dir=str(tmp_path), video_format="mp4")
    record(logger)
    assert_stamped(read_video(tmp_path / "exp" / "videos" / "run_0.mp4"), 6)


def test_tensorboard_gets_the_video_in_its_event_file(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import (
        IMAGES,
        EventAccumulator,
    )

    logger = TensorboardLogger("tb", log_dir=str(tmp_path))
    record(logger, fps=10)
    logger.experiment.flush()
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={IMAGES: 0})
    events.Reload()
    assert events.Tags()["images"] == ["run"]
    (image,) = events.Images("run")
    assert image.step == 0 and (image.height, image.width) == (HEIGHT, WIDTH)
    gif = Image.open(io.BytesIO(image.encoded_image_string))
    frames = [
        torch.from_numpy(__import__("numpy").asarray(f.convert("RGB"))).permute(2, 0, 1)
        for f in ImageSequence.Iterator(gif)
    ]
    assert_stamped(torch.stack(frames), 6, tolerance=2)
    assert gif.info["duration"] == 100  # 10 fps


def test_tensorboard_rejects_arguments_it_cannot_take_at_construction(tmp_path):
    logger = TensorboardLogger("tb", log_dir=str(tmp_path))
    with pytest.raises(RecorderError, match=r"\['video_codec'\]"):
        VideoRecorder(logger, "run", video_codec="libx265")


def test_mlflow_gets_the_mp4_as_an_artifact(tmp_path, monkeypatch):
    # mlflow 3 keeps the file store behind this switch (its database store needs SQLAlchemy).
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    import mlflow

    logger = MLFlowLogger("ml", tracking_uri=(tmp_path / "mlruns").as_uri())
    env = record(logger, fps=10)
    env.rollout(2)
    env.transform.dump()
    mlflow.end_run()
    videos = {p.name: p for p in (tmp_path / "mlruns").rglob("artifacts/videos/*.mp4")}
    assert sorted(videos) == ["run.mp4", "run_step_0001.mp4"]  # TorchRL's names
    assert_stamped(read_video(videos["run.mp4"]), 6)
    second = read_video(videos["run_step_0001.mp4"])
    assert [round(counter_of(f)) for f in second] == pytest.approx([6, 7, 8], abs=4)
    assert logger.video_log_counter == 2


def test_wandb_offline_gets_the_mp4(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(exp_name="wb", offline=True, save_dir=str(tmp_path), project="funrec")
    try:
        record(logger, fps=10)
    finally:
        logger.experiment.finish()
    (video,) = (tmp_path / "wandb").glob("offline-run-*/files/media/videos/run_0_*.mp4")
    assert_stamped(read_video(video), 6)


def test_a_process_logger_owner_gets_mp4_without_torchcodec(tmp_path):
    # The services workflow: VideoRecorder(logger_owner, fps=30).
    owner = ProcessLogger(CSVLogger, "svc", log_dir=str(tmp_path), video_format="mp4")
    try:
        record(owner, fps=30)
        owner.flush(timeout=30)
    finally:
        owner.shutdown(timeout=30)
    assert_stamped(read_video(tmp_path / "svc" / "videos" / "run_0.mp4"), 6)


def test_a_process_logger_with_pt_goes_through_the_service(tmp_path):
    owner = ProcessLogger(CSVLogger, "svc", log_dir=str(tmp_path), video_format="pt")
    try:
        record(owner.client())
        owner.flush(timeout=30)
    finally:
        owner.shutdown(timeout=30)
    video = torch.load(tmp_path / "svc" / "videos" / "run_0.pt", weights_only=True)
    assert [counter_of(f) for f in video[0]] == list(range(6))


def _eval_env(client) -> TransformedEnv:
    return TransformedEnv(StampEnv(), VideoRecorder(client, "eval"))


def _policy(env=None) -> TensorDictModule:
    return TensorDictModule(lambda obs: torch.zeros(obs.shape[:-3], dtype=torch.int64),
                            in_keys=["pixels"], out_keys=["action"])


@pytest.mark.slow
def test_an_evaluator_in_a_worker_process_writes_mp4_through_a_client(tmp_path):
    owner = ProcessLogger(CSVLogger, "ev", log_dir=str(tmp_path), video_format="mp4")
    evaluator = Evaluator(
        partial(_eval_env, owner.client()),
        policy_factory=_policy,
        max_steps=4,
        dump_video=True,
        backend="process",
    )
    try:
        evaluator.evaluate(step=3)
        evaluator.evaluate(step=7)
        owner.flush(timeout=30)
    finally:
        evaluator.shutdown()
        owner.shutdown(timeout=30)
    videos = sorted(p.name for p in (tmp_path / "ev" / "videos").glob("*.mp4"))
    assert videos == ["eval_3.mp4", "eval_7.mp4"]
    for name in videos:
        video = read_video(tmp_path / "ev" / "videos" / name)
        assert video.shape[1:] == (3, HEIGHT, WIDTH) and video.shape[0] > 0


def test_wandb_rejects_a_format_other_than_mp4(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(exp_name="wb", offline=True, save_dir=str(tmp_path), project="funrec")
    try:
        with pytest.raises(RecorderError, match="format='gif'"):
            VideoRecorder(logger, "run", format="gif")
    finally:
        logger.experiment.finish()


def test_the_log_video_path_for_other_loggers_is_torchrls(tmp_path):
    calls = []

    class Duck:
        def log_video(self, name, video, step=None, **kwargs):
            calls.append((name, tuple(video.shape), step, kwargs))

    record(Duck(), steps=2, fps=7, extra="x")
    assert calls == [("run", (1, 3, 3, HEIGHT, WIDTH), 0, {"fps": 7, "extra": "x"})]


def test_the_directory_of_a_service_logger_is_its_loggers(tmp_path):
    owner = ProcessLogger(CSVLogger, "svc", log_dir=str(tmp_path), video_format="mp4")
    try:
        client = owner.client()
        assert VideoRecorder(client, "x")._video_dir() == Path(tmp_path) / "svc" / "videos"
        assert VideoRecorder(owner, "x")._video_dir() == Path(tmp_path) / "svc" / "videos"
    finally:
        owner.shutdown(timeout=30)
