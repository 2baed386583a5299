"""Streaming out of a running scan: every recorded frame reaches the writer once, in order."""

import funrec_jax
import jax
import jax.numpy as jnp
import pytest
import torch

import funrec
from funrec.writers import open_video, read_video, write_drained


def stamped(t, env=0):
    """A uint8 frame carrying ``t`` in red and ``env`` in green."""
    frame = jnp.zeros((6, 10, 3), jnp.uint8)
    return frame.at[..., 0].set(jnp.uint8(t % 256)).at[..., 1].set(jnp.uint8(env))


def run(rec, writer, steps, k, n_envs=None):
    """jit(scan) of ``steps`` steps, streaming every ``k``; returns the final state."""

    def data(t):
        if n_envs is None:
            return {"pixels": stamped(t), "next": {"reward": jnp.float32(1), "done": t % 5 == 4}}
        return {
            "pixels": jnp.stack([stamped(t, e) for e in range(n_envs)]),
            "next": {"reward": jnp.ones(n_envs), "done": jnp.full(n_envs, t % 5 == 4)},
        }

    step = rec.step if n_envs is None else jax.vmap(rec.step)

    def body(state, t):
        state = step(state, data(t))
        return funrec_jax.write_drained(state, writer, when=t % k == k - 1), None

    init = rec.init if n_envs is None else jax.vmap(rec.init)
    state = init(data(0))
    return jax.jit(lambda s: jax.lax.scan(body, s, jnp.arange(steps))[0])(state)


def test_every_recorded_frame_is_written_once_in_order(tmp_path):
    rec = funrec_jax.frames(max_frames=4)
    with open_video(tmp_path / "clip.pt") as writer:
        state = run(rec, writer, steps=22, k=4)
        assert int(state.held) == 2  # 20 frames left in five chunks, 2 wait
        write_drained(funrec_jax.export(state), writer)  # the rest, after the scan
    video = read_video(tmp_path / "clip.pt")
    assert video[:, 0, 0, 0].tolist() == list(range(22))
    assert funrec.counts(funrec_jax.export(state)) == funrec.Counts(22, 22, 0, 0)


def test_gated_streams_write_what_the_gate_passes(tmp_path):
    rec = funrec_jax.every(3, funrec_jax.frames(max_frames=2, overflow="error"))
    with open_video(tmp_path / "clip.pt") as writer:
        state = run(rec, writer, steps=18, k=6)
    assert read_video(tmp_path / "clip.pt")[:, 0, 0, 0].tolist() == [0, 3, 6, 9, 12, 15]
    assert funrec.counts(funrec_jax.export(state)) == funrec.Counts(18, 6, 12, 0)


def test_vmapped_streams_write_one_video_per_env(tmp_path):
    rec = funrec_jax.named(
        video=funrec_jax.frames(max_frames=5), stats=funrec_jax.episode_stats(max_episodes=8)
    )
    writers = [open_video(tmp_path / f"env{e}.png", format="png") for e in range(3)]
    state = run(rec, [{"video": w} for w in writers], steps=15, k=5, n_envs=3)
    for w in writers:
        w.close()
    for e in range(3):
        video = read_video(tmp_path / f"env{e}.png")
        assert video[:, 0, 0, 0].tolist() == list(range(15))
        assert set(video[:, 1, 0, 0].tolist()) == {e}
    per_env = funrec_jax.export(state)
    # The episodes had no writer: they stay in the state.
    assert [ep.env for ep in funrec.episodes(per_env[2]["stats"])] == [2, 2, 2]
    assert funrec.counts(per_env[0]["video"]) == funrec.Counts(15, 15, 0, 0)
    assert len(funrec.video(per_env[0]["video"])) == 0


def test_writers_get_the_counts_in_their_sidecar(tmp_path):
    rec = funrec_jax.frames(max_frames=3, overflow="drop_newest")
    with open_video(tmp_path / "clip.pt") as writer:
        run(rec, writer, steps=10, k=5)  # 5 steps between writes, 3 slots: 2 dropped each time
    assert writer.metadata["counts"] == {"seen": 10, "recorded": 6, "skipped": 0, "dropped": 4}
    assert read_video(tmp_path / "clip.pt")[:, 0, 0, 0].tolist() == [0, 1, 2, 5, 6, 7]


def test_a_batched_state_needs_one_writer_per_env(tmp_path):
    rec = funrec_jax.frames(max_frames=2)
    with open_video(tmp_path / "clip.pt") as writer, pytest.raises(TypeError, match="per env"):
        run(rec, writer, steps=2, k=2, n_envs=2)


def test_eager_write_drained_writes_and_drains(tmp_path):
    rec = funrec_jax.frames(max_frames=4)
    data = {"pixels": stamped(9)}
    state = rec.step(rec.init(data), data)
    with open_video(tmp_path / "clip.pt") as writer:
        state = funrec_jax.write_drained(state, writer)
        state = funrec_jax.write_drained(state, writer, when=False)
    assert int(state.held) == 0
    assert torch.equal(read_video(tmp_path / "clip.pt")[:, 0, 0, 0], torch.tensor([9]))


def test_chunks_that_wrap_around_the_ring_keep_their_order(tmp_path):
    # Every 3 steps into a ring of 4: the held frames start anywhere and wrap past its end.
    rec = funrec_jax.frames(max_frames=4)
    with open_video(tmp_path / "clip.pt") as writer:
        state = run(rec, writer, steps=14, k=3)
        write_drained(funrec_jax.export(state), writer)
    assert read_video(tmp_path / "clip.pt")[:, 0, 0, 0].tolist() == list(range(14))


def test_two_vmaps_stream_each_env_to_its_writer(tmp_path):
    rec = funrec_jax.frames(max_frames=4)
    writers = [open_video(tmp_path / f"env{e}.pt") for e in range(6)]

    def body(state, t):
        pixels = jnp.stack([jnp.stack([stamped(t, 3 * a + b) for b in range(3)]) for a in range(2)])
        state = jax.vmap(jax.vmap(rec.step))(state, {"pixels": pixels})
        return funrec_jax.write_drained(state, writers, when=t % 4 == 3), None

    state = jax.vmap(jax.vmap(rec.init))({"pixels": jnp.zeros((2, 3, 6, 10, 3), jnp.uint8)})
    jax.jit(lambda s: jax.lax.scan(body, s, jnp.arange(8))[0])(state)
    for e, w in enumerate(writers):
        w.close()
        video = read_video(tmp_path / f"env{e}.pt")
        assert video[:, 0, 0, 0].tolist() == list(range(8))
        assert set(video[:, 1, 0, 0].tolist()) == {e}


def test_frames_with_batch_dims_stream_as_the_cores_grid(tmp_path):
    # One state recording [2, H, W, 3] frames (no vmap): the core tiles them side by side.
    rec = funrec_jax.frames(max_frames=4)

    def body(state, t):
        pixels = jnp.stack([stamped(t, 0), stamped(t, 1)])
        return funrec_jax.write_drained(
            rec.step(state, {"pixels": pixels}), w, when=t % 2 == 1
        ), None

    with open_video(tmp_path / "grid.pt") as w:
        state = rec.init({"pixels": jnp.zeros((2, 6, 10, 3), jnp.uint8)})
        jax.jit(lambda s: jax.lax.scan(body, s, jnp.arange(4))[0])(state)
    video = read_video(tmp_path / "grid.pt")
    eager = funrec.clip(
        [
            torch.stack([torch.tensor(jax.device_get(stamped(t, e))) for e in (0, 1)]).movedim(
                -1, -3
            )
            for t in range(4)
        ]
    )
    assert torch.equal(video, eager)


def test_a_writer_opened_with_its_size_starts_before_the_scan(tmp_path):
    rec = funrec_jax.frames(max_frames=4)
    with open_video(tmp_path / "clip.mp4", size=(6, 10)) as writer:
        assert writer.partial is not None and writer.partial.exists()  # ffmpeg runs already
        ffmpeg = writer._stream.sink.proc
        run(rec, writer, steps=8, k=4)
        assert writer._stream.sink.proc is ffmpeg  # the callback did not start another
    video = read_video(tmp_path / "clip.mp4")
    assert len(video) == 8
    red = video[:, 0].float().mean(dim=(1, 2))  # lossy: the stamps, to within the codec's error
    assert (red - torch.arange(8.0)).abs().max() < 3


def test_a_writer_opened_with_its_size_and_left_empty_leaves_no_file(tmp_path):
    writer = open_video(tmp_path / "clip.mp4", size=(6, 10))
    partial = writer.partial
    assert writer.close() is None
    assert sorted(tmp_path.iterdir()) == [] and not partial.exists()


def test_frames_of_another_size_than_the_writer_was_opened_with_are_refused(tmp_path):
    with open_video(tmp_path / "clip.pt", size=(8, 8)) as writer:
        with pytest.raises(ValueError, match=r"open_video\(size=\(8, 8\)\) fixed 8x8"):
            writer.write(torch.zeros(1, 3, 6, 10, dtype=torch.uint8))
        writer.write(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))  # the writer stays usable
    assert read_video(tmp_path / "clip.pt").shape == (2, 3, 8, 8)


def test_finish_writes_the_last_partial_chunk_and_closes_every_writer(tmp_path):
    rec = funrec_jax.named(
        video=funrec_jax.frames(max_frames=4), stats=funrec_jax.episode_stats(max_episodes=8)
    )
    writers = [open_video(tmp_path / f"env{e}.mp4", size=(6, 10)) for e in range(2)]
    state = run(rec, [{"video": w} for w in writers], steps=10, k=4, n_envs=2)
    per_env = funrec_jax.finish(state, [{"video": w} for w in writers])
    for e, env_state in enumerate(per_env):
        video = read_video(tmp_path / f"env{e}.mp4")  # finished: decodable, all 10 frames
        assert len(video) == 10
        red = video[:, 0].float().mean((1, 2))  # the step, stamped in red (lossy mp4)
        assert (red - torch.arange(10)).abs().max() < 3
        assert len(funrec.video(env_state["video"])) == 0
        assert funrec.counts(env_state["video"]) == funrec.Counts(10, 10, 0, 0)
        assert [ep.length for ep in funrec.episodes(env_state["stats"])] == [5, 5]
    with pytest.raises(funrec.writers.WriterError, match="closed"):
        writers[0].write(torch.zeros(1, 3, 6, 10, dtype=torch.uint8))


def test_finish_closes_the_other_writers_when_one_fails(tmp_path):
    rec = funrec_jax.frames(max_frames=4)
    good, bad = open_video(tmp_path / "good.pt"), open_video(tmp_path / "bad.pt", size=(2, 2))
    state = run(rec, [good, bad], steps=2, k=4, n_envs=2)  # nothing streamed yet
    with pytest.raises(ValueError, match="size"):  # 6x10 frames into a 2x2 writer
        funrec_jax.finish(state, [good, bad])
    assert read_video(tmp_path / "good.pt")[:, 0, 0, 0].tolist() == [0, 1]
