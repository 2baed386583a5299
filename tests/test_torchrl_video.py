"""funrec_torchrl.VideoRecorder against TorchRL envs: every frame once, in order, written right."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import psutil
import pytest
import torch
from faults import ffmpeg_writing, fragments, wait_for
from funrec_torchrl import PixelRenderTransform, VideoRecorder
from tensordict import TensorDict
from test_torchrl_envs import HEIGHT, WIDTH, StampEnv, counter_of, env_of, stamp, stamp_envs
from torchrl.envs import GymEnv, SerialEnv, TransformedEnv, check_env_specs
from torchrl.record.loggers import CSVLogger

import funrec
from funrec.writers import read_video


def counters(video: torch.Tensor) -> list[int]:
    return [counter_of(frame) for frame in video]


def pt_files(logger: CSVLogger) -> dict[str, torch.Tensor]:
    videos = Path(logger.experiment.log_dir) / "videos"
    return {p.name: torch.load(p, weights_only=True) for p in sorted(videos.glob("*.pt"))}


def test_every_reset_and_step_frame_is_recorded_once_in_order():
    env = TransformedEnv(StampEnv(), VideoRecorder(None, "run"))
    env.rollout(10)
    video = env.transform.videos()["run"]
    assert video.shape == (11, 3, HEIGHT, WIDTH)
    assert counters(video) == list(range(11))
    assert env.transform.counts()["run"] == funrec.Counts(11, 11, 0, 0)


def test_skip_and_max_frames_come_from_funrec_and_are_counted():
    env = TransformedEnv(StampEnv(), VideoRecorder(None, "run", skip=3))
    env.rollout(10)
    assert counters(env.transform.videos()["run"]) == [0, 3, 6, 9]
    assert env.transform.counts()["run"] == funrec.Counts(seen=11, recorded=4, skipped=7)

    env = TransformedEnv(StampEnv(), VideoRecorder(None, "run", max_frames=4))
    env.rollout(10)
    assert counters(env.transform.videos()["run"]) == [0, 1, 2, 3]
    assert env.transform.counts()["run"] == funrec.Counts(seen=11, recorded=4, dropped=7)


def test_each_in_key_is_its_own_video():
    env = TransformedEnv(StampEnv(), VideoRecorder(None, "run", in_keys=["pixels", "pixels2"]))
    env.rollout(3)
    videos = env.transform.videos()
    assert set(videos) == {"run_pixels", "run_pixels2"}
    assert counters(videos["run_pixels"]) == [0, 1, 2, 3]
    assert torch.equal(videos["run_pixels2"], 255 - videos["run_pixels"])


def test_dump_calls_log_video_with_torchrl_names_steps_and_shape(tmp_path):
    logger = CSVLogger("exp", log_dir=str(tmp_path), video_format="pt")
    env = TransformedEnv(StampEnv(), VideoRecorder(logger, "run"))
    env.rollout(4)
    env.transform.dump()
    env.rollout(2)
    env.transform.dump(suffix="eval", step=7)
    env.transform.dump()  # nothing held: no file, but the step counter moves, as in TorchRL
    env.rollout(1)
    env.transform.dump()
    files = pt_files(logger)
    assert sorted(files) == ["run_0.pt", "run_3.pt", "run_eval_7.pt"]
    assert files["run_0.pt"].shape == (1, 5, 3, HEIGHT, WIDTH)
    assert files["run_0.pt"].dtype == torch.uint8
    assert counters(files["run_0.pt"][0]) == [0, 1, 2, 3, 4]
    assert counters(files["run_eval_7.pt"][0]) == [5, 6, 7]
    assert counters(files["run_3.pt"][0]) == [8, 9]


def test_dump_with_nothing_recorded_is_a_no_op(tmp_path):
    logger = CSVLogger("exp", log_dir=str(tmp_path), video_format="pt")
    recorder = VideoRecorder(logger, "run")
    recorder.dump()
    TransformedEnv(StampEnv(), recorder).transform.dump()
    assert pt_files(logger) == {}


def test_a_failed_log_video_keeps_the_frames_and_a_retry_writes_them(tmp_path):
    logger = CSVLogger("exp", log_dir=str(tmp_path), video_format="pt")
    env = TransformedEnv(StampEnv(), VideoRecorder(logger, "run"))
    env.rollout(5)
    blocker = Path(logger.experiment.log_dir) / "videos" / "run_0.pt"
    blocker.mkdir()  # torch.save cannot write over a directory
    with pytest.raises(RuntimeError, match="Is a directory"):
        env.transform.dump()
    assert counters(env.transform.videos()["run"]) == list(range(6))
    blocker.rmdir()
    env.transform.dump(step=0)
    assert counters(pt_files(logger)["run_0.pt"][0]) == list(range(6))
    assert env.transform.videos()["run"].shape[0] == 0


def test_mp4_is_streamed_and_dump_names_it_like_csvlogger(tmp_path):
    logger = CSVLogger("exp", log_dir=str(tmp_path), video_format="mp4")
    env = TransformedEnv(StampEnv(), VideoRecorder(logger, "run", fps=10))
    env.rollout(20)
    videos = tmp_path / "exp" / "videos"
    # Streaming: nothing is held in memory, the frames are in the partial file already.
    assert env.transform.videos()["run"].shape[0] == 0
    assert env.transform._writers["run"].frames == 21
    env.transform.dump()
    assert sorted(p.name for p in videos.iterdir()) == ["run_0.mp4", "run_0.mp4.json"]
    video = read_video(videos / "run_0.mp4")
    assert video.shape == (21, 3, HEIGHT, WIDTH)
    # Lossy codec: the stamped counters survive to within a few levels.
    assert all(abs(counter_of(f) - i) <= 4 for i, f in enumerate(video))


def test_a_failed_stream_keeps_every_frame_in_the_partial_or_for_dump(tmp_path):
    logger = CSVLogger("exp", log_dir=str(tmp_path), video_format="mp4")
    videos = tmp_path / "exp" / "videos"
    env = TransformedEnv(StampEnv(), VideoRecorder(logger, "run", fps=10))
    env.rollout(29)  # frames 0..29 streamed
    writer = env.transform._writers["run"]
    writer.flush()
    wait_for(lambda: fragments(writer.partial) >= 1, "a complete mp4 fragment")
    ffmpeg = ffmpeg_writing(writer.partial)
    ffmpeg.kill()
    # Dead (a zombie until the writer reaps it), so its pipe is closed before the next frames.
    wait_for(lambda: ffmpeg.status() == psutil.STATUS_ZOMBIE, "ffmpeg to die")
    with pytest.warns(RuntimeWarning, match=r"streaming video 'run' failed.*-9.*partial"):
        env.rollout(9)  # frames 30..39: the writer finds ffmpeg dead and hands frames back
    in_partial = read_video(writer.partial)  # what ffmpeg wrote before it died stays
    assert 1 <= len(in_partial) < 40
    held = env.transform.videos()["run"]  # the rest: handed back or never written
    assert counters(held) == list(range(len(in_partial), 40))
    env.transform.dump()
    final = read_video(videos / "run_0.mp4")
    assert len(final) == 40 - len(in_partial)
    assert all(abs(counter_of(f) - i) <= 4 for i, f in enumerate(final, len(in_partial)))
    assert env.transform.videos()["run"].shape[0] == 0
    assert env.transform.counts()["run"] == funrec.Counts(40, 40, 0, 0)


def test_grid_tiles_the_batch_and_skips_partial_resets():
    env = TransformedEnv(stamp_envs(3, 5, 100, 100), VideoRecorder(None, "grid"))
    env.rollout(8, break_when_any_done=False)
    video = env.transform.videos()["grid"]
    # one grid frame per full reset and per step; the 3 partial resets are skipped
    assert video.shape == (9, 3, 2 * HEIGHT, 2 * WIDTH)
    assert env.transform.counts()["grid"] == funrec.Counts(seen=12, recorded=9, skipped=3)
    for row in range(2):
        for col in range(2):
            tile = video[:, :, row * HEIGHT : (row + 1) * HEIGHT, col * WIDTH : (col + 1) * WIDTH]
            assert {env_of(f) for f in tile} == {row * 2 + col}
    # env 2 never resets after the first frame: its tile counts 0..8
    assert counters(video[:, :, HEIGHT:, :WIDTH]) == list(range(9))


def test_grid_matches_torchrl_tiling():
    from torchrl.record.recorder import _make_video_grid

    frames = torch.randint(0, 256, (5, 3, 4, 6), dtype=torch.uint8)
    assert torch.equal(funrec.grid(frames), _make_video_grid(frames))
    assert torch.equal(funrec.grid(frames[None])[0], _make_video_grid(frames))


def test_per_env_videos_are_cut_at_each_envs_own_episode_end(tmp_path):
    logger = CSVLogger("exp", log_dir=str(tmp_path), video_format="pt")
    recorder = VideoRecorder(logger, "ep", make_grid=False, dump_on_done=True)
    env = TransformedEnv(stamp_envs(2, 3, 50), recorder)
    env.rollout(9, break_when_any_done=False)
    files = pt_files(logger)
    # env0: episodes of 2 steps -> 3 frames each, 4 finished in 9 steps; env1: 3 finished
    assert sorted(files) == [
        *(f"ep_env0_{i}.pt" for i in range(4)),
        *(f"ep_env1_{i}.pt" for i in range(3)),
    ]
    for i in range(4):
        video = files[f"ep_env0_{i}.pt"][0]
        assert {env_of(f) for f in video} == {0}
        assert counters(video) == [3 * i, 3 * i + 1, 3 * i + 2]
    for i in range(3):
        assert counters(files[f"ep_env1_{i}.pt"][0]) == [4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3]
    held = recorder.videos()
    assert counters(held["ep_env2"]) == list(range(10))  # never done: still held
    assert counters(held["ep_env0"]) == [12, 13]  # the 5th episode, unfinished
    assert counters(held["ep_env1"]) == []  # the last step of a rollout does not reset
    recorder.dump()
    assert counters(pt_files(logger)["ep_env2_0.pt"][0]) == list(range(10))


def test_grid_dump_on_done_fires_when_every_env_is_done():
    recorder = VideoRecorder(None, "grid", dump_on_done=True)
    env = TransformedEnv(stamp_envs(2, 2), recorder)
    env.rollout(2)
    assert recorder.iter == 1
    assert recorder.videos()["grid"].shape[0] == 0


def test_fps_defaults_to_render_fps_over_skip(tmp_path):
    logger = CSVLogger("exp", log_dir=str(tmp_path), video_format="mp4")
    env = GymEnv("CartPole-v1", render_mode="rgb_array")  # render_fps 50
    env = env.append_transform(PixelRenderTransform())
    env = env.append_transform(VideoRecorder(logger, "cart", skip=2))
    env.rollout(6, break_when_any_done=False)
    env.transform[-1].dump()
    path = tmp_path / "exp" / "videos" / "cart_0.mp4"
    meta = json.loads(Path(str(path) + ".json").read_text())
    assert meta["fps"] == 25
    video = read_video(path)
    assert video.shape == (4, 3, 400, 600)  # frames 0, 2, 4, 6 of 7
    assert (video < 100).any()  # the black cart is there, on a white background


@pytest.mark.parametrize("batched", [False, True])
def test_a_state_vector_is_refused_naming_key_shape_and_fix(batched):
    env = SerialEnv(2, lambda: GymEnv("CartPole-v1")) if batched else GymEnv("CartPole-v1")
    env = env.append_transform(VideoRecorder(None, "x", in_keys=["observation"]))
    shape = "(2, 4)" if batched else "(4,)"
    with pytest.raises(funrec.LayoutError, match="observation") as info:
        env.rollout(2)
    assert shape in str(info.value)
    assert "PixelRenderTransform" in str(info.value)
    assert "from_pixels=True" in str(info.value)
    env.close()


def test_transform_pickles_with_its_state_and_goes_on_recording():
    recorder = VideoRecorder(None, "run", skip=2)
    env = TransformedEnv(StampEnv(), recorder)
    env.rollout(4)
    copy = pickle.loads(pickle.dumps(recorder))
    assert copy.state == recorder.state
    assert counters(copy.videos()["run"]) == [0, 2, 4]
    env2 = TransformedEnv(StampEnv(), copy)
    env2.base_env.counter = 5
    env2.rollout(2)
    assert counters(copy.videos()["run"]) == [0, 2, 4, 6]
    assert copy.counts()["run"] == funrec.Counts(seen=8, recorded=4, skipped=4)


def test_pickling_while_streaming_says_to_dump_first(tmp_path):
    logger = CSVLogger("exp", log_dir=str(tmp_path), video_format="mp4")
    env = TransformedEnv(StampEnv(), VideoRecorder(logger, "run"))
    env.rollout(2)
    with pytest.raises(funrec.RecorderError, match="dump"):
        pickle.dumps(env.transform)
    env.transform.dump()
    pickle.dumps(env.transform)


def test_check_env_specs_passes_with_the_recorder_appended():
    env = TransformedEnv(stamp_envs(3, 4), VideoRecorder(None, "grid"))
    check_env_specs(env)
    env.close()


def test_forward_reads_a_batch_as_consecutive_frames():
    td = TensorDict({"pixels": torch.stack([stamp(i, 0) for i in range(5)])}, [5])
    recorder = VideoRecorder(None, "data")
    recorder(td)
    recorder(td[:2])
    assert counters(recorder.videos()["data"]) == [0, 1, 2, 3, 4, 0, 1]


def test_pong_video_is_the_pixels_of_every_step(tmp_path):
    logger = CSVLogger("exp", log_dir=str(tmp_path), video_format="pt")
    env = GymEnv("ALE/Pong-v5").append_transform(VideoRecorder(logger, "pong"))
    td = env.rollout(12)
    env.transform.dump()
    video = pt_files(logger)["pong_0.pt"][0]
    expected = torch.cat([td["pixels"][:1], td["next", "pixels"]]).permute(0, 3, 1, 2)
    assert torch.equal(video, expected)


def test_per_env_mp4_videos_stream_and_are_cut_per_episode(tmp_path):
    logger = CSVLogger("exp", log_dir=str(tmp_path), video_format="mp4")
    recorder = VideoRecorder(logger, "ep", make_grid=False, dump_on_done=True, fps=10)
    env = TransformedEnv(stamp_envs(2, 3), recorder)
    env.rollout(6, break_when_any_done=False)
    videos = tmp_path / "exp" / "videos"
    lengths = {p.name: read_video(p).shape[0] for p in sorted(videos.glob("*.mp4"))}
    # env0 finished 3 episodes of 3 frames, env1 2 of 4; the rollout's last step resets nothing
    assert lengths == {
        "ep_env0_0.mp4": 3,
        "ep_env0_1.mp4": 3,
        "ep_env0_2.mp4": 3,
        "ep_env1_0.mp4": 4,
        "ep_env1_1.mp4": 4,
    }


def test_center_crop_needs_no_torchvision():
    env = TransformedEnv(StampEnv(), VideoRecorder(None, "run", center_crop=4))
    env.rollout(2)
    video = env.transform.videos()["run"]
    assert video.shape == (3, 3, 4, 4)
    assert counters(video) == [0, 1, 2]


def test_parallel_env_per_env_videos_hold_every_frame_once_in_order():
    from test_torchrl_envs import _Maker
    from torchrl.envs import ParallelEnv

    base = ParallelEnv(2, [_Maker(0, 3), _Maker(1, 100)], mp_start_method="spawn")
    env = TransformedEnv(base, VideoRecorder(None, "ep", make_grid=False))
    env.rollout(10, break_when_any_done=False)
    videos = env.transform.videos()
    # env0 reset on its own after steps 3, 6 and 9: 1 + 10 + 3 frames, each once, in order
    assert counters(videos["ep_env0"]) == list(range(14))
    assert counters(videos["ep_env1"]) == list(range(11))
    assert {env_of(f) for f in videos["ep_env1"]} == {1}
    env.close()


def test_same_files_as_torchrls_recorder_with_skip_1(tmp_path):
    from torchrl.record import VideoRecorder as TorchRLVideoRecorder

    def session(recorder_class, name):
        logger = CSVLogger(name, log_dir=str(tmp_path), video_format="pt")
        env = TransformedEnv(StampEnv(), recorder_class(logger, "run", skip=1))
        env.rollout(4)
        env.transform.dump()
        env.rollout(2)
        env.transform.dump(suffix="eval", step=7)
        env.transform.dump()
        env.rollout(1)
        env.transform.dump()
        return pt_files(logger)

    ours, theirs = session(VideoRecorder, "funrec"), session(TorchRLVideoRecorder, "torchrl")
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name


def test_a_bad_frame_raises_and_keeps_what_was_recorded():
    recorder = VideoRecorder(None, "run")
    recorder(TensorDict({"pixels": torch.stack([stamp(i, 0) for i in range(3)])}, [3]))
    bad = torch.zeros(5, 5, 3, dtype=torch.uint8)  # another size mid-stream
    with pytest.raises(funrec.LayoutError, match="pixels"):
        recorder(TensorDict({"pixels": bad}))
    assert counters(recorder.videos()["run"]) == [0, 1, 2]


def test_dump_after_env_close_writes_the_video_as_torchrl_does(tmp_path):
    logger = CSVLogger("exp", log_dir=str(tmp_path), video_format="mp4")
    env = TransformedEnv(StampEnv(), VideoRecorder(logger, "run", fps=10))
    env.rollout(7)
    env.close()  # TorchRL's order: close the env, then dump
    env.transform.dump()
    video = read_video(tmp_path / "exp" / "videos" / "run_0.mp4")
    assert len(video) == 8
    assert all(abs(counter_of(f) - i) <= 4 for i, f in enumerate(video))


def test_two_recorders_with_one_logger_and_tag_are_refused_at_the_first_frame(tmp_path):
    logger = CSVLogger("exp", log_dir=str(tmp_path), video_format="mp4")
    first = TransformedEnv(StampEnv(), VideoRecorder(logger, "run", fps=10))
    second = TransformedEnv(StampEnv(), VideoRecorder(logger, "run", fps=10))
    first.rollout(5)
    with pytest.raises(funrec.RecorderError, match=r"another VideoRecorder.*'run'.*own tag"):
        second.rollout(5)
    first.rollout(4)  # the first recorder's video is untouched
    first.transform.dump()
    video = read_video(tmp_path / "exp" / "videos" / "run_0.mp4")
    assert [abs(counter_of(f) - i) <= 4 for i, f in enumerate(video)] == [True] * 11
    second.rollout(2)  # once the first one has dumped, the name is free again
    second.transform.dump(step=1)
    assert len(read_video(tmp_path / "exp" / "videos" / "run_1.mp4")) >= 3


@pytest.mark.parametrize("fps", [0, -1, float("inf"), "30"])
def test_a_bad_fps_is_refused_at_construction(fps):
    with pytest.raises(ValueError, match="VideoRecorder: fps="):
        VideoRecorder(None, "run", fps=fps)
