"""Recording inside TorchRL's RayCollector, on a local-only Ray started by the tests.

Ray comes with the ``ray`` extra (``make setup`` installs it). It starts in
about 10 s and each collector actor imports torch and TorchRL, so CI runs one
small synchronous test; the asynchronous one with videos is ``slow`` and runs
only with ``FUNREC_FULL=1``.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import time
from pathlib import Path

import psutil
import pytest
import torch
from funrec_torchrl import CollectorRecorder, gather

import funrec
from funrec import Counts, RecorderError
from funrec.writers import read_video, sidecar_path

ray = pytest.importorskip("ray", reason="the 'ray' extra is not installed")
from test_workers import STATS, collect_and_gather, make_env  # noqa: E402
from torchrl.collectors.distributed import RayCollector  # noqa: E402

REMOTE = {"num_cpus": 1, "memory": 2**30}
FULL = os.environ.get("FUNREC_FULL") == "1"


@pytest.fixture(scope="module")
def local_ray():
    """Ray on this machine only: two CPUs, no dashboard, every listener on 127.0.0.1.

    conftest.py sets RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before anything imports Ray.
    """
    saved = os.environ.get("PYTHONPATH")
    # the actors unpickle this module's env factory by reference
    here = str(Path(__file__).parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, saved]))
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False)
    print(f"\nray.init: {time.perf_counter() - start:.1f} s")
    ours = {os.getpid()} | {p.pid for p in psutil.Process().children(recursive=True)}
    listening = [
        c.laddr.ip
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in ours
    ]
    assert listening and all(ip.removeprefix("::ffff:") == "127.0.0.1" for ip in listening)
    yield
    ray.shutdown()
    if saved is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = saved


def test_ray_sync_workers_record_what_the_main_loop_receives(local_ray):
    steps, batches = 10, 3
    start = time.perf_counter()
    collector = RayCollector(
        [functools.partial(make_env, w) for w in range(2)],
        policy=None,
        frames_per_batch=2 * steps,
        total_frames=10**9,  # never runs out: RayCollector shuts down when it does
        sync=True,
        remote_configs=REMOTE,
        post_collect_hook=CollectorRecorder(STATS),
    )
    made = time.perf_counter() - start
    main = [STATS.init(), STATS.init()]

    def on_batch(batch):
        assert batch["worker"][:, 0].tolist() == [0, 1]  # stacked in actor order
        for w in range(2):
            main[w] = funrec.fold(STATS, batch[w].unbind(-1), main[w])

    result, seconds = collect_and_gather(collector, batches, on_batch)
    assert result.missing == {}
    labels = set()
    for w, worker in result.workers.items():
        assert worker.batches == batches
        main[w] = funrec.with_origin(main[w], worker.label)
        assert funrec.episodes(worker.state) == funrec.episodes(main[w])
        assert worker.state.running_reward == main[w].running_reward
        labels.add(worker.label)  # "<host>-<pid>": an actor does not know its index
    assert len(labels) == 2
    assert result.state == funrec.merge(*main)
    sizes = [len(pickle.dumps(w)) for w in result.workers.values()]
    print(f"\nray sync: collector {made:.1f} s, gather {seconds:.3f} s, states {sizes} B")
    assert max(sizes) < 2048
    # after shutdown the actors are gone: gather says so instead of hanging
    with pytest.raises(RecorderError, match="has no workers left"):
        gather(collector)


@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="a second Ray collector: runs with FUNREC_FULL=1")
def test_ray_async_workers_stream_their_videos(local_ray, tmp_path):
    """Async: actors run up to one batch ahead of the loop; per-worker videos decode in full."""
    steps, received_batches = 50, 12
    hooks = [
        CollectorRecorder(
            funrec.named(video=funrec.frames("pixels"), stats=funrec.episode_stats()),
            tmp_path / f"w{w}",
            fps=50,
            worker=w,  # per-worker hooks through collector_kwargs: files named by index
        )
        for w in range(2)
    ]
    collector = RayCollector(
        [functools.partial(make_env, w, pixels=True) for w in range(2)],
        policy=None,
        frames_per_batch=steps,
        total_frames=10**9,
        sync=False,
        remote_configs=REMOTE,
        collector_kwargs=[{"post_collect_hook": hook} for hook in hooks],
    )
    received = {0: [], 1: []}
    order = []

    def on_batch(batch):
        order.append(int(batch["worker"][0]))
        received[order[-1]].append(batch["pixels"].clone())

    result, seconds = collect_and_gather(collector, received_batches, on_batch)
    last = order[-1]
    assert result.missing == {}
    for w, worker in result.workers.items():
        # the rule on Ray: RayCollector asks an actor for its next batch after yielding its
        # last one, so when the loop stops every actor but the last one yielded from has one
        # batch in flight, which it finishes before answering gather (calls run in order)
        assert worker.batches == len(received[w]) + (w != last)
        n = steps * worker.batches
        assert funrec.counts(worker.state)["video"] == Counts(n, n, 0, 0)
        (path,) = worker.files
        assert Path(path).name == f"video_worker{w}_0.mp4"
        assert json.loads(sidecar_path(path).read_text())["complete"] is True
        video = read_video(path)
        assert len(video) == n
        if received[w]:  # the batches the loop received are the video's first frames
            seen = torch.cat(received[w]).permute(0, 3, 1, 2).float()
            assert (video[: len(seen)].float() - seen).abs().mean() < 2
    sizes = [len(pickle.dumps(w)) for w in result.workers.values()]
    print(f"\nray async: gather {seconds:.3f} s (finishing videos), states {sizes} B")
