"""Recording inside TorchRL's multi-process collectors: fold in the workers, gather, merge.

The engines are TorchRL's own (MultiSyncCollector, MultiAsyncCollector,
Evaluator) with spawned workers over real CartPole; the tests compare what the
workers recorded with a fold of the batches the main process received, and
decode every video the workers wrote.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import signal
import time
from pathlib import Path

import cloudpickle
import pytest
import torch
from funrec_torchrl import (
    CollectorRecorder,
    Gathered,
    PixelRenderTransform,
    VideoLogger,
    VideoRecorder,
    gather,
)
from torchrl.collectors import Collector, MultiAsyncCollector, MultiSyncCollector
from torchrl.data import Unbounded
from torchrl.envs import GymEnv
from torchrl.envs.transforms import TensorDictPrimer
from torchrl.record.loggers import CSVLogger

import funrec
from funrec import Counts, RecorderError
from funrec.writers import read_video, sidecar_path

STATS = funrec.episode_stats()
RECORDER = funrec.named(video=funrec.frames("pixels"), stats=funrec.episode_stats())


def make_env(worker: int = 0, pixels: bool = False, videos: str | None = None) -> GymEnv:
    """CartPole whose steps carry ``"worker"``; optionally rendered, and recorded env-side."""
    env = GymEnv("CartPole-v1", render_mode="rgb_array" if pixels else None)
    if pixels:
        env = env.append_transform(PixelRenderTransform())
    env = env.append_transform(
        TensorDictPrimer(worker=Unbounded(shape=(), dtype=torch.int64), default_value=worker)
    )
    if videos is not None:
        logger = CSVLogger("env", log_dir=videos, video_format="mp4")
        env = env.append_transform(VideoRecorder(logger, tag=f"env_worker{worker}"))
    return env


def per_worker(n: int, **kwargs) -> list[dict]:
    return [{"worker": w, **kwargs} for w in range(n)]


def merged(states):
    return functools.reduce(funrec.merge, states)


def collect_and_gather(collector, batches: int, on_batch) -> tuple[Gathered, float]:
    """Runs ``on_batch(batch)`` on the first ``batches`` batches, then gathers and shuts down.

    Returns:
        The gathered recording, and how many seconds ``gather`` took.
    """
    try:
        for i, batch in enumerate(collector):
            on_batch(batch)
            if i == batches - 1:
                break
        start = time.perf_counter()
        result = gather(collector)
        return result, time.perf_counter() - start
    finally:
        collector.shutdown()


def test_sync_workers_record_what_the_main_loop_receives(tmp_path):
    """2 workers, 3 batches of 20 steps each: per-worker folds equal the main-process fold."""
    steps, batches = 20, 3
    hook = CollectorRecorder(RECORDER, tmp_path / "hook", fps=50)
    collector = MultiSyncCollector(
        [make_env] * 2,
        policy=None,
        frames_per_batch=2 * steps,
        total_frames=10**9,
        create_env_kwargs=per_worker(2, pixels=True, videos=str(tmp_path / "logs")),
        post_collect_hook=hook,
    )
    main = [STATS.init(), STATS.init()]
    pixels = [[], []]
    dones = [0, 0]

    def on_batch(batch):
        assert batch["worker"][:, 0].tolist() == [0, 1]  # stacked in worker order
        for w in range(2):
            main[w] = funrec.fold(STATS, batch[w].unbind(-1), main[w])
            pixels[w].append(batch[w]["pixels"].clone())
            dones[w] += int(batch[w]["next", "done"].sum())

    result, seconds = collect_and_gather(collector, batches, on_batch)
    batch_bytes = pixels[0][0].nbytes * 2

    assert result.missing == {}
    assert sorted(result.workers) == [0, 1]
    for w, worker in result.workers.items():
        assert (worker.worker, worker.label, worker.batches) == (w, f"worker{w}", batches)
        # the same episodes as the main-process fold, each marked with its worker
        assert funrec.episodes(worker.state["stats"]) == funrec.episodes(
            funrec.with_origin(main[w], f"worker{w}")
        )
        assert worker.state["stats"].running_reward == main[w].running_reward
        n = steps * batches
        assert funrec.counts(worker.state)["video"] == Counts(n, n, 0, 0)
        assert len(funrec.video(worker.state["video"])) == 0  # streamed, not shipped
        # the worker's own video: every frame it folded, in order, as the main loop saw it
        (path,) = worker.files
        assert Path(path).name == f"video_worker{w}_0.mp4"
        video = read_video(path).float()
        expected = torch.cat(pixels[w]).permute(0, 3, 1, 2).float()
        assert video.shape == expected.shape == (n, 3, 400, 600)
        own = (video - expected).abs().mean()
        other = (video - torch.cat(pixels[1 - w]).permute(0, 3, 1, 2).float()).abs().mean()
        assert own < 2 and own < other / 2, (own, other)
        # the env-side VideoRecorder built in create_env_fn, finished by gather:
        # the first reset, every step, and the reset after every done
        env_video = tmp_path / "logs" / "env" / "videos" / f"env_worker{w}_0.mp4"
        frames = len(read_video(env_video))
        meta = json.loads(sidecar_path(env_video).read_text())["metadata"]
        assert frames == meta["counts"]["recorded"] == n + dones[w] + 1
    both = merged([result.workers[0].state, result.workers[1].state])
    assert result.state == both
    marked = [funrec.with_origin(main[w], f"worker{w}") for w in range(2)]
    assert funrec.episodes(result.state["stats"]) == funrec.episodes(merged(marked))
    # merged, the episodes still say which worker they came from, worker 0's first
    origins = [e.origin for e in funrec.episodes(result.state["stats"])]
    finished = {f"worker{w}" for w in range(2) if dones[w]}  # random actions: rarely one
    assert finished  # 60 random CartPole steps per worker end some episode
    assert origins == sorted(origins) and set(origins) == finished, origins

    # what travels: the state, not the frames
    sizes = [len(pickle.dumps(w)) for w in result.workers.values()]
    print(f"\nsync: batch {batch_bytes} B of pixels; states {sizes} B; gather {seconds:.3f} s")
    assert max(sizes) < 4096 < batch_bytes


def test_async_workers_run_ahead_of_the_main_loop():
    """Each worker has collected at least one batch more than the loop received from it."""
    steps, received_batches = 10, 12
    collector = MultiAsyncCollector(
        [make_env] * 2,
        policy=None,
        frames_per_batch=steps,
        total_frames=10**9,
        create_env_kwargs=per_worker(2),
        post_collect_hook=CollectorRecorder(STATS),
    )
    received = {0: [], 1: []}
    result, _ = collect_and_gather(
        collector, received_batches, lambda b: received[int(b["worker"][0])].append(b)
    )

    assert result.missing == {}
    for w, worker in result.workers.items():
        # the rule: a worker is asked for its next batch before the current one is yielded
        assert worker.batches >= len(received[w]) + 1
        # every step it collected is in its state: finished episodes plus the running one
        lengths = sum(e.length for e in funrec.episodes(worker.state))
        assert lengths + worker.state.running_length[0] == steps * worker.batches
        main = funrec.fold(STATS, [td for b in received[w] for td in b.unbind(-1)])
        if worker.batches == len(received[w]) + 1:  # no batch dropped in between:
            # what the loop received is a prefix of what the worker recorded
            ahead = funrec.episodes(worker.state)
            expected = funrec.episodes(funrec.with_origin(main, f"worker{w}"))
            assert ahead[: len(expected)] == expected
    assert len(funrec.episodes(result.state)) == sum(
        len(funrec.episodes(w.state)) for w in result.workers.values()
    )


def test_a_killed_worker_is_reported_and_the_others_keep_their_recording(tmp_path):
    """SIGKILL one worker mid-rollout: the other answers, the dead one is named, files play."""
    steps = 100
    hook = CollectorRecorder(RECORDER, tmp_path / "hook", fps=50)
    logs = tmp_path / "logs"
    collector = MultiAsyncCollector(
        [make_env] * 2,
        policy=None,
        frames_per_batch=steps,
        total_frames=10**9,
        create_env_kwargs=per_worker(2, pixels=True, videos=str(logs)),
        post_collect_hook=hook,
    )
    received = {0: 0, 1: 0}
    batches = iter(collector)
    try:
        for batch in batches:
            w = int(batch["worker"][0])
            received[w] += 1
            if received[w] == 2:
                # TorchRL sent this worker its next "continue" before yielding: let it
                # get into its next batch (no assertion depends on how far it got)
                victim = w
                time.sleep(0.3)
                os.kill(collector.procs[victim].pid, signal.SIGKILL)
                break
        survivor = 1 - victim
        result = gather(collector, timeout=30)
        # TorchRL itself, asked for the next batch, finds the dead worker and raises; it
        # terminates the others and closes their handles (a ValueError when one outlives the
        # 0.1 s it waits: pygame's SDL handles SIGTERM)
        with pytest.raises((RuntimeError, ValueError)):
            next(batches)
        after = gather(collector, timeout=30)
    finally:
        collector.shutdown()

    assert list(result.missing) == [victim]
    assert f"worker {victim} (pid" in result.missing[victim]
    assert "exit code -9" in result.missing[victim]
    # the survivor's state came over its pipe; its files are finished and complete
    alive = result.workers[survivor]
    assert not alive.recovered and alive.batches >= received[survivor]
    n = steps * alive.batches
    assert funrec.counts(alive.state)["video"] == Counts(n, n, 0, 0)
    (path,) = alive.files
    assert len(read_video(path)) == n
    assert json.loads(sidecar_path(path).read_text())["complete"] is True
    # the dead worker: its last checkpoint (after its last finished batch) stands in
    dead = result.workers[victim]
    assert dead.recovered and dead.batches >= 2
    recorded = funrec.counts(dead.state)["video"].recorded
    assert recorded == steps * dead.batches
    # its video plays: ffmpeg (a process of its own) read end-of-file when the worker died
    # and finished the file with the frames it had been handed
    (path,) = dead.files
    hook_frames = len(read_video(path))
    assert 0 < hook_frames <= recorded
    # its env-side video too, which the VideoRecorder streamed step by step until the kill
    (env_video,) = (logs / "env" / "videos").glob(f"env_worker{victim}*.mp4")
    env_frames = len(read_video(env_video))
    assert env_frames >= recorded
    print(f"\nkilled: checkpoint {recorded}, its mp4 {hook_frames}, env mp4 {env_frames} frames")
    # TorchRL shut the collector down on its way out: gathering again still loses nothing,
    # every worker comes back from its checkpoint, the survivor with the state it sent before
    assert sorted(after.missing) == [0, 1]
    assert "the collector is shut down" in after.missing[survivor]
    assert all(w.recovered for w in after.workers.values())
    assert after.workers[victim].state == dead.state
    assert after.workers[survivor].state == alive.state


def test_evaluator_process_backend_records_through_funrec(tmp_path):
    """Evaluator(backend="process"): stats from the worker hook, videos through a logger service."""
    from torchrl.collectors import Evaluator
    from torchrl.record.loggers import ProcessLogger

    logger = ProcessLogger(VideoLogger, exp_name="eval", log_dir=str(tmp_path), fps=50)
    evaluator = Evaluator(
        functools.partial(make_eval_env, logger.client()),
        policy_factory=random_policy,
        num_trajectories=2,
        max_steps=100,
        backend="process",
        collector_kwargs={"post_collect_hook": CollectorRecorder(STATS)},
    )
    try:
        metrics = [evaluator.evaluate(step=step) for step in range(2)]
        result = gather(evaluator, finish=False)
    finally:
        evaluator.shutdown()
        logger.shutdown()
    (worker,) = result.workers.values()
    episodes = funrec.episodes(worker.state)
    assert sum(m["eval/num_episodes"] for m in metrics) == 4 <= len(episodes)
    # the Evaluator's first two trajectories are the first two episodes the worker finished
    first = episodes[:2]
    assert metrics[0]["eval/reward"] == pytest.approx(sum(e.total_reward for e in first) / 2)
    assert metrics[0]["eval/episode_length"] == pytest.approx(sum(e.length for e in first) / 2)
    # one writer process wrote the videos the worker's VideoRecorder dumped after each
    # evaluation (an evaluation served from trajectories already collected dumps nothing):
    # together, the first reset, every step and the reset after every done
    videos = sorted((tmp_path / "eval" / "videos").glob("eval_*.mp4"))
    assert videos and videos[0].name == "eval_0.mp4"
    frames = sum(len(read_video(v)) for v in videos)
    steps = sum(e.length for e in episodes) + worker.state.running_length[0]
    assert frames == steps + len(episodes) + 1


def make_eval_env(client):
    env = make_env(pixels=True)
    return env.append_transform(VideoRecorder(client, tag="eval"))


def random_policy(env=None):
    """The process backend calls its policy_factory without an env (TorchRL 0.14.1)."""
    from torchrl.envs.utils import RandomPolicy

    return RandomPolicy((env or make_env()).action_spec)


# -- in one process: the contract without spawning ---------------------------------


def test_a_single_process_collector_is_gathered_directly(tmp_path):
    hook = CollectorRecorder(RECORDER, tmp_path, fps=10)
    collector = Collector(
        functools.partial(make_env, pixels=True), policy=None, frames_per_batch=5, total_frames=15,
        post_collect_hook=hook,
    )
    main = STATS.init()
    for batch in collector:
        main = funrec.fold(STATS, batch.unbind(-1), main)
    result = gather(collector)
    collector.shutdown()
    (worker,) = result.workers.values()
    main = funrec.with_origin(main, worker.label)
    assert worker.batches == 3 and funrec.episodes(worker.state["stats"]) == funrec.episodes(main)
    assert worker.label.endswith(f"-{os.getpid()}")  # no worker index in the main process
    assert len(read_video(worker.files[0])) == 15
    # the checkpoint holds the same state
    checkpoint = pickle.loads((tmp_path / f"{worker.label}.state").read_bytes())
    assert checkpoint.state == worker.state


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"recorder": "stats"}, "expected a funrec.Recorder"),
        ({"fps": 0}, "fps=0"),
        ({"worker": -1}, "worker=-1"),
        ({"recorder": RECORDER, "directory": None}, "no directory"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, match):
    kwargs = {"recorder": STATS, **kwargs}
    with pytest.raises((RecorderError, TypeError, ValueError), match=match):
        CollectorRecorder(**kwargs)


def test_a_used_directory_is_refused(tmp_path):
    (tmp_path / "video_worker0_0.mp4").write_bytes(b"earlier run")
    with pytest.raises(RecorderError, match="not empty"):
        CollectorRecorder(STATS, tmp_path)


def test_gather_needs_a_collector_recorder_hook():
    collector = Collector(make_env, policy=None, frames_per_batch=5, total_frames=5)
    with pytest.raises(RecorderError, match=r"not a funrec_torchrl\.CollectorRecorder"):
        gather(collector)
    collector.shutdown()


def test_a_streaming_hook_cannot_be_copied(tmp_path):
    hook = CollectorRecorder(RECORDER, tmp_path)
    env = make_env(pixels=True)
    hook(env.rollout(3))
    with pytest.raises(RecorderError, match="cannot be copied while it writes"):
        cloudpickle.dumps(hook)  # how TorchRL copies hooks into its workers
    hook.report(0, finish=True)
    assert cloudpickle.loads(cloudpickle.dumps(hook)).batches == 1


def test_video_logger_writes_mp4_with_funrec(tmp_path):
    logger = VideoLogger("run", log_dir=str(tmp_path), fps=10)
    video = torch.randint(0, 255, (1, 4, 3, 32, 48), dtype=torch.uint8)
    logger.log_video("clip", video, step=3)
    logger.log_scalar("loss", 0.5, step=1)
    decoded = read_video(tmp_path / "run" / "videos" / "clip_3.mp4")
    assert decoded.shape == (4, 3, 32, 48)
    assert (tmp_path / "run" / "scalars" / "loss.csv").read_text() == "1,0.5\n"


def test_the_example_records_a_two_worker_collection(tmp_path):
    import subprocess
    import sys

    example = Path(__file__).resolve().parent.parent / "examples" / "workers_cartpole.py"
    out = tmp_path / "videos"
    run = subprocess.run(
        [sys.executable, str(example), str(out), "2", "15"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,  # a guard against a hang, not a speed check
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "missing workers: none" in run.stdout
    for w in range(2):
        assert f"worker {w}: 2 batches, 30 frames" in run.stdout
        video = read_video(out / f"video_worker{w}_0.mp4")
        assert video.shape == (30, 3, 400, 600)
