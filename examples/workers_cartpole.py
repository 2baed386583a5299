"""Recording a 2-worker TorchRL collection: every worker writes its own video, the stats travel.

A MultiSyncCollector runs CartPole in two worker processes. A CollectorRecorder,
its post_collect_hook, folds a funrec recorder over every batch inside the
worker: the frames go straight to that worker's mp4, and the state keeps only
their counts and the finished episodes. gather() brings the small states back,
finishes the videos and merges the states.

    python examples/workers_cartpole.py [OUT_DIR] [BATCHES] [STEPS_PER_WORKER]

writes OUT_DIR/video_worker0_0.mp4 and OUT_DIR/video_worker1_0.mp4 (OUT_DIR must be
new or empty) and prints what each worker recorded.
"""

import pickle
import sys
import time

from funrec_torchrl import CollectorRecorder, PixelRenderTransform, gather
from torchrl.collectors import MultiSyncCollector
from torchrl.envs import GymEnv

import funrec


def make_env():
    env = GymEnv("CartPole-v1", render_mode="rgb_array")
    return env.append_transform(PixelRenderTransform())


if __name__ == "__main__":  # the workers are spawned: they import this file
    out = sys.argv[1] if len(sys.argv) > 1 else "workers_cartpole"
    batches = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 50

    recorder = funrec.named(video=funrec.frames("pixels"), stats=funrec.episode_stats())
    collector = MultiSyncCollector(
        [make_env, make_env],
        policy=None,  # random actions
        frames_per_batch=2 * steps,
        total_frames=2 * steps * batches,
        post_collect_hook=CollectorRecorder(recorder, out, fps=50),
    )
    pixel_bytes = 0
    try:
        for batch in collector:  # train on `batch` here; the workers already wrote its pixels
            pixel_bytes += batch["pixels"].nbytes
        start = time.perf_counter()
        result = gather(collector)  # after the loop, before shutdown
        seconds = time.perf_counter() - start
    finally:
        collector.shutdown()

    for worker in result.workers.values():
        episodes = funrec.episodes(worker.state["stats"])
        print(
            f"worker {worker.worker}: {worker.batches} batches, "
            f"{funrec.counts(worker.state['video']).recorded} frames in {worker.files}, "
            f"{len(episodes)} episodes, state {len(pickle.dumps(worker))} bytes"
        )
    returns = [e.total_reward for e in funrec.episodes(result.state["stats"])]
    print(f"merged: {len(returns)} episodes, mean return {sum(returns) / max(len(returns), 1):.1f}")
    print(f"gather: {seconds:.3f} s; missing workers: {result.missing or 'none'}")
    print(f"(the batches themselves carried {pixel_bytes / 1e6:.1f} MB of pixels)")
