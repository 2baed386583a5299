"""funrec_torchrl behaves as TorchRL's recorders where TorchRL code relies on them.

Each test is a behaviour TorchRL's own tests, tutorials or sota-implementations
depend on, checked on real envs and real files (decoded), not on TorchRL's code.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import imageio_ffmpeg
import pytest
import torch
import torchrl.record
from funrec_torchrl import PixelRenderTransform, TensorDictRecorder, VideoRecorder, center_crop
from tensordict import TensorDict
from test_torchrl_envs import HEIGHT, WIDTH, StampEnv, counter_of, env_of, stamp
from torchrl._utils import logger as torchrl_logger
from torchrl.envs import Compose, GymEnv, ParallelEnv, SerialEnv, StepCounter, TransformedEnv
from torchrl.record.loggers import CSVLogger
from torchrl.testing import AddPixelsTransform
from torchrl.testing.mocking_classes import MultiAgentCountingEnv

import funrec
from funrec.writers import load, read_video


class CaptureLogger:
    """A duck-typed logger keeping each ``log_video`` call."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def log_video(self, name=None, video=None, step=None, **kwargs):
        self.calls.append({"name": name, "video": video, "step": step, **kwargs})


def counters(video: torch.Tensor) -> list[int]:
    return [counter_of(frame) for frame in video]


def mp4_fps(path: Path) -> float:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    reader.close()
    return meta["fps"]


# -- found by type -------------------------------------------------------------------


def test_the_transforms_are_instances_of_torchrls(tmp_path):
    assert isinstance(VideoRecorder(None, None), torchrl.record.VideoRecorder)
    assert isinstance(PixelRenderTransform(), torchrl.record.PixelRenderTransform)
    recorder = TensorDictRecorder(str(tmp_path / "t"))
    assert isinstance(recorder, torchrl.record.TensorDictRecorder)


def test_a_dump_found_by_torchrls_class_writes_the_video(tmp_path):
    # TorchRL's sota-implementations dump from their utils, by TorchRL's class.
    logger = CSVLogger("x", log_dir=str(tmp_path), video_format="mp4")
    env = GymEnv("CartPole-v1", from_pixels=True, pixels_only=False)
    env = env.append_transform(VideoRecorder(logger, tag="v"))
    rollout = env.rollout(5)
    env.apply(lambda m: isinstance(m, torchrl.record.VideoRecorder) and m.dump())
    env.close()
    videos = tmp_path / "x" / "videos"
    assert sorted(p.name for p in videos.glob("*.mp4")) == ["v_0.mp4"]
    video = read_video(videos / "v_0.mp4")
    assert video.shape == (6, 3, 400, 600)
    expected = torch.cat([rollout["pixels"][:1], rollout["next", "pixels"]]).permute(0, 3, 1, 2)
    assert (video.float() - expected.float()).abs().mean() < 3  # lossy, but these frames


# -- obs, count, _apply_transform, to_animation ----------------------------------------


def test_obs_and_count_read_the_recorder_state_and_dump_empties_them():
    env = TransformedEnv(StampEnv(), VideoRecorder(None, "run", skip=2))
    recorder = env.transform
    env.rollout(6)
    frames = recorder.obs
    assert [tuple(f.shape) for f in frames] == [(3, HEIGHT, WIDTH)] * 4
    assert [counter_of(f) for f in frames] == [0, 2, 4, 6]
    assert recorder.count == 7  # every frame seen: recorded or skipped
    recorder.dump()
    assert recorder.obs == [] and recorder.obs is frames
    assert recorder.count == 0
    env.rollout(1)
    assert len(recorder.obs) == 1 and recorder.count == 2
    recorder.obs = []  # TorchRL code empties the buffer this way
    assert recorder.obs == [] and recorder.videos()["run"].shape[0] == 0
    with pytest.raises(ValueError, match="can only be emptied"):
        recorder.obs = [torch.zeros(3, 2, 2, dtype=torch.uint8)]


def test_apply_transform_records_one_observation_and_grayscale_becomes_rgb():
    recorder = VideoRecorder(None, None)
    gray = torch.arange(6 * 8, dtype=torch.uint8).reshape(1, 6, 8)
    assert recorder._apply_transform(gray) is gray
    (frame,) = recorder.obs
    assert frame.shape == (3, 6, 8)
    assert all(torch.equal(frame[c], gray[0]) for c in range(3))


def test_apply_transform_under_a_batched_parent_makes_one_grid_frame():
    env = TransformedEnv(SerialEnv(4, StampEnv), VideoRecorder(None, "grid"))
    recorder = env.transform
    frames = torch.stack([stamp(i, env_id=i) for i in range(4)]).permute(0, 3, 1, 2)
    recorder._apply_transform(frames)
    (grid,) = recorder.obs
    assert grid.shape == (3, 2 * HEIGHT, 2 * WIDTH)
    tiles = [grid[:, r * HEIGHT, c * WIDTH] for r in range(2) for c in range(2)]
    assert [int(t[2]) for t in tiles] == [0, 1, 2, 3]  # env ids, row by row


def test_to_animation_shows_every_held_frame_and_clear_empties():
    pytest.importorskip("matplotlib")
    from matplotlib.animation import ArtistAnimation

    env = TransformedEnv(StampEnv(), VideoRecorder(None, "run"))
    env.rollout(3)
    recorder = env.transform
    frames = recorder.obs
    animation = recorder.to_animation(title="run", clear=True)
    assert isinstance(animation, ArtistAnimation)
    shown = [artists[0].get_array() for artists in animation.new_frame_seq()]
    assert [int(a[0, 0, 0]) for a in shown] == [0, 1, 2, 3]
    assert recorder.obs == [] and recorder.obs is frames and recorder.count == 0
    with pytest.raises(RuntimeError, match="no frame is held"):
        recorder.to_animation()


# -- a stack of frames without batch dims ------------------------------------------------


def test_an_unbatched_stack_of_real_frames_is_consecutive_frames_without_make_grid():
    env = GymEnv("CartPole-v1", from_pixels=True, pixels_only=False)
    pixels = env.rollout(4)["pixels"]  # [4, 400, 600, 3], a stack of real frames
    env.close()
    recorder = VideoRecorder(None, None, make_grid=False)
    recorder(TensorDict(pixels=pixels))
    video = recorder.videos()["video"]
    assert torch.equal(video, pixels.permute(0, 3, 1, 2))

    gridded = VideoRecorder(None, None, make_grid=True)
    gridded(TensorDict(pixels=pixels))
    assert gridded.videos()["video"].shape == (1, 3, 2 * 400, 2 * 600)


def test_a_grayscale_stack_is_consecutive_rgb_frames():
    recorder = VideoRecorder(None, None, make_grid=False)
    stack = torch.arange(4, dtype=torch.uint8).reshape(4, 1, 1, 1).expand(4, 1, 16, 16)
    recorder(TensorDict(pixels=stack))
    video = recorder.videos()["video"]
    assert video.shape == (4, 3, 16, 16)
    assert video[:, :, 0, 0].tolist() == [[i] * 3 for i in range(4)]


def test_max_frames_bounds_the_frames_of_stacks():
    recorder = VideoRecorder(None, None, make_grid=False, max_frames=5)
    for _ in range(3):
        recorder._apply_transform(torch.zeros(4, 3, 16, 16, dtype=torch.uint8))
    assert len(recorder.obs) == 5
    assert recorder.counts()["video"].dropped == 7
    with pytest.raises(ValueError, match="max_frames"):
        VideoRecorder(None, None, max_frames=0)


# -- dump_on_done --------------------------------------------------------------------------


def test_dump_on_done_reads_nested_done_keys_of_a_multi_agent_env():
    logger = CaptureLogger()
    env = MultiAgentCountingEnv(n_agents=2, max_steps=3)  # done keys: ("agents", <agent>, "done")
    env = TransformedEnv(env, AddPixelsTransform())
    env = env.append_transform(VideoRecorder(logger, "ma", dump_on_done=True))
    env.rollout(10, break_when_any_done=False)
    # An episode is 4 steps: its reset frame and 4 step frames per video; the third
    # episode (a reset and 2 steps so far) is still held.
    assert [call["video"].shape[1] for call in logger.calls] == [5, 5]
    assert [call["step"] for call in logger.calls] == [0, 1]
    assert len(env.transform[-1].obs) == 3


def test_dump_on_done_on_a_truncating_step_counter_and_a_batched_env():
    logger = CaptureLogger()
    base = SerialEnv(2, lambda: TransformedEnv(StampEnv(), StepCounter(max_steps=4)))
    env = TransformedEnv(base, VideoRecorder(logger, "batch", dump_on_done=True))
    env.rollout(10)
    env.close()
    # both sub-envs are truncated together at the 4th step: one grid video of 5 frames.
    assert [tuple(call["video"].shape) for call in logger.calls] == [
        (1, 5, 3, HEIGHT, 2 * WIDTH)
    ]


# -- recorders inside batched-env workers ------------------------------------------------


class _WorkerEnv:
    """A picklable factory: a StampEnv with its own VideoRecorder (in each worker)."""

    def __init__(self, log_dir: str, video_format: str, env_id: int) -> None:
        self.log_dir, self.video_format, self.env_id = log_dir, video_format, env_id

    def __call__(self) -> TransformedEnv:
        logger = CSVLogger("w", log_dir=self.log_dir, video_format=self.video_format)
        self.recorder = VideoRecorder(logger, "cam", fps=10)  # the last one built
        return TransformedEnv(StampEnv(env_id=self.env_id), self.recorder)


def _torchrl_warnings() -> tuple[list[str], logging.Handler]:
    records: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    return records, Handler()


def test_recorders_in_serial_workers_warn_and_write_distinct_files(tmp_path):
    records, handler = _torchrl_warnings()
    torchrl_logger.addHandler(handler)
    try:
        # the env id stamped in the frames says which worker made them
        factories = [_WorkerEnv(str(tmp_path), "pt", env_id) for env_id in (0, 1)]
        env = SerialEnv(2, factories)
    finally:
        torchrl_logger.removeHandler(handler)
    assert any("VideoRecorder" in r and "worker env" in r for r in records)  # TorchRL's
    assert any("_worker<i>" in r for r in records)
    env.rollout(3)
    for factory in factories:  # worker-side recorders: dumped by hand, as TorchRL says
        factory.recorder.dump()
    env.close()
    videos = tmp_path / "w" / "videos"
    files = sorted(p.name for p in videos.glob("*.pt"))
    assert files == ["cam_worker0_0.pt", "cam_worker1_0.pt"]
    for worker in (0, 1):
        video = torch.load(videos / f"cam_worker{worker}_0.pt", weights_only=True)[0]
        assert {env_of(f) for f in video} == {worker}
        assert video.shape[0] == 4  # reset + 3 steps: nothing overwritten


@pytest.mark.slow
def test_recorders_in_parallel_workers_stream_distinct_mp4_files(tmp_path):
    factories = [_WorkerEnv(str(tmp_path), "mp4", env_id) for env_id in (0, 200)]
    env = ParallelEnv(2, factories, mp_start_method="spawn")
    env.rollout(5)
    env.close()  # the workers' recorders are never dumped: their partial files stay
    videos = tmp_path / "w" / "videos"
    partial = sorted(videos.glob("*.partial.mp4"))
    assert [p.name.split(".")[0] for p in partial] == ["cam_worker0", "cam_worker1"]
    for path, env_id in zip(partial, (0, 200), strict=True):
        video = read_video(path)
        assert video.shape[0] >= 1
        assert all(abs(env_of(frame) - env_id) <= 8 for frame in video)  # lossy blue


# -- fps, tag, PixelRenderTransform -----------------------------------------------------------


def test_fps_is_kept_in_video_kwargs_and_tag_none_passes_name_none():
    logger = CaptureLogger()
    env = TransformedEnv(StampEnv(), VideoRecorder(logger, None, fps=12))
    assert env.transform.video_kwargs == {"fps": 12}
    env.rollout(2)
    env.transform.dump()
    (call,) = logger.calls
    assert call["name"] is None and call["fps"] == 12 and call["step"] == 0


def _cartpole() -> TransformedEnv:
    env = GymEnv("CartPole-v1", render_mode="rgb_array")
    return env.append_transform(PixelRenderTransform())


@pytest.mark.parametrize("batched", [SerialEnv, ParallelEnv])
def test_default_fps_is_the_sub_envs_render_fps_through_a_batched_env(tmp_path, batched):
    logger = CSVLogger("fps", log_dir=str(tmp_path), video_format="mp4")
    kwargs = {"mp_start_method": "spawn"} if batched is ParallelEnv else {}
    env = batched(2, _cartpole, **kwargs).append_transform(VideoRecorder(logger, "cp"))
    env.rollout(3)
    env.transform.dump()
    env.close()
    path = tmp_path / "fps" / "videos" / "cp_0.mp4"
    assert mp4_fps(path) == 50  # CartPole's metadata["render_fps"]
    assert read_video(path).shape == (4, 3, 400, 2 * 600)


def test_pixel_render_transform_raises_runtime_error_for_several_out_keys():
    with pytest.raises(RuntimeError, match="one key"):
        PixelRenderTransform(out_keys=["a", "b"])


# -- center_crop: torchvision's rule -------------------------------------------------------------


def _image(h: int, w: int) -> torch.Tensor:
    return torch.arange(1, h * w + 1).reshape(1, h, w)


@pytest.mark.parametrize(
    ("side", "size", "start"),
    [
        (5, 2, 2),  # round(1.5) = 2
        (7, 2, 2),  # round(2.5) = 2: halves go to the even integer
        (6, 3, 2),  # round(1.5) = 2
        (4, 3, 0),  # round(0.5) = 0
        (9, 4, 2),  # round(2.5) = 2
        (8, 4, 2),
    ],
)
def test_center_crop_offsets_round_half_to_even(side, size, start):
    image = _image(side, side)
    expected = image[:, start : start + size, start : start + size]
    assert torch.equal(center_crop(image, size), expected)


def test_center_crop_pads_a_short_side_with_zeros_before_cropping():
    # 2x3 image to 5x5: 3 rows of padding (1 above, 2 below), 2 columns (1 each side).
    out = center_crop(_image(2, 3), 5)
    expected = torch.zeros(1, 5, 5, dtype=torch.int64)
    expected[:, 1:3, 1:4] = _image(2, 3)
    assert torch.equal(out, expected)
    # 3x8 image to 4x4: one row padded below, columns cropped from round(2.0) = 2.
    out = center_crop(_image(3, 8), 4)
    expected = torch.zeros(1, 4, 4, dtype=torch.int64)
    expected[:, 0:3] = _image(3, 8)[:, :, 2:6]
    assert torch.equal(out, expected)


def test_a_center_crop_below_one_pixel_fails_at_construction():
    with pytest.raises(ValueError, match="crop must be a positive int"):
        VideoRecorder(None, None, center_crop=0)


def test_dump_writes_the_sidecar_metadata_of_the_stream(tmp_path):
    logger = CSVLogger("m", log_dir=str(tmp_path), video_format="mp4")
    env = TransformedEnv(StampEnv(), VideoRecorder(logger, "s", fps=5))
    env.rollout(2)
    env.transform.dump()
    sidecar = json.loads((tmp_path / "m" / "videos" / "s_0.mp4.json").read_text())
    assert sidecar["fps"] == 5 and sidecar["frames"] == 3


def test_a_transform_after_a_streaming_recorder_can_read_its_parent(tmp_path):
    # A collector appends a StepCounter; its parent env is rebuilt from clones of
    # the transforms before it, the streaming recorder included.
    logger = CSVLogger("c", log_dir=str(tmp_path), video_format="mp4")
    env = TransformedEnv(StampEnv(), Compose(VideoRecorder(logger, "s"), StepCounter()))
    env.rollout(3)
    clone = env.transform[1].parent.transform[0]
    assert clone is not env.transform[0] and clone.videos() == {}
    env.rollout(2)
    env.transform.dump()
    assert_frames = read_video(tmp_path / "c" / "videos" / "s_0.mp4")
    assert assert_frames.shape[0] == 4 + 3  # both rollouts, nothing taken by the clone


# -- TensorDictRecorder(store=True): funrec's trajectory store ---------------------------------


def test_tensordict_recorder_streams_to_a_store_that_loads_back(tmp_path):
    base = tmp_path / "cartpole"
    recorder = TensorDictRecorder(str(base), skip=1, store=True)
    env = TransformedEnv(GymEnv("CartPole-v1"), recorder)
    rollout = env.rollout(60, break_when_any_done=False)
    assert funrec.drain(recorder.state)[0] == ()  # nothing held: every step is on disk
    assert (tmp_path / "cartpole.partial_trajectory").is_dir()
    recorder.dump(suffix="a")
    env.close()
    stored = load(tmp_path / "cartpole_a_trajectory")
    steps = rollout["next"]
    assert stored.batch_size == (60,)
    for key in ("observation", "reward", "done", "terminated"):
        assert torch.equal(stored[key], steps[key]), key
    # episodes: a new id after every done step
    ends = steps["done"].squeeze(-1).long()
    expected = torch.cat([torch.zeros(1, dtype=torch.long), ends.cumsum(0)[:-1]])
    assert torch.equal(stored["episode"], expected) and ends.sum() >= 1
    assert not (tmp_path / "cartpole.partial_trajectory").exists()


def test_tensordict_recorder_store_refuses_an_existing_store_and_keeps_the_steps(tmp_path):
    base = tmp_path / "run"
    env = TransformedEnv(StampEnv(), TensorDictRecorder(str(base), skip=1, store=True))
    env.rollout(3)
    env.transform.dump()
    env.rollout(2)
    with pytest.raises(FileExistsError, match="never written over"):
        env.transform.dump()
    env.transform.dump(suffix="b")
    assert load(tmp_path / "run_trajectory").batch_size == (3,)
    assert load(tmp_path / "run_b_trajectory").batch_size == (2,)
    with pytest.raises(ValueError, match="skip_reset=True"):
        TensorDictRecorder(str(base), skip_reset=False, store=True)
