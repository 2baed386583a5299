"""funrec_jax recorders: counts, rings, gates, named, errors at trace time, flags at export,
the same results eagerly, under jit, inside scan and under vmap, and no retracing."""

import contextlib

import funrec_jax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from tensordict import TensorDict

import funrec
from funrec.errors import BufferFullError, MissingKeyError, RecorderError
from funrec.layout import LayoutError


def stamped(t, shape=(6, 8, 3)):
    """A uint8 frame whose pixels all hold ``t`` (mod 256)."""
    return jnp.full(shape, t % 256, jnp.uint8)


def stream(n, shape=(6, 8, 3), done_every=0):
    """``n`` steps of data: stamped pixels, reward t, done every ``done_every`` steps."""
    return [
        {
            "pixels": stamped(t, shape),
            "next": {
                "reward": jnp.float32(t),
                "done": jnp.bool_(done_every and t % done_every == done_every - 1),
            },
        }
        for t in range(n)
    ]


def stacked(steps):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *steps)


def fold(rec, steps, step=None):
    step = step or rec.step
    state = rec.init(steps[0])
    for data in steps:
        state = step(state, data)
    return state


def scan_fold(rec, steps):
    def body(state, data):
        return rec.step(state, data), None

    return jax.jit(lambda s, xs: jax.lax.scan(body, s, xs)[0])(rec.init(steps[0]), stacked(steps))


def stamps(core_state):
    return funrec.video(core_state)[:, 0, 0, 0].tolist()


@pytest.mark.parametrize(
    ("overflow", "expected_stamps", "expected_counts"),
    [
        ("drop_newest", [0, 1, 2], funrec.Counts(seen=7, recorded=3, skipped=0, dropped=4)),
        ("drop_oldest", [4, 5, 6], funrec.Counts(seen=7, recorded=3, skipped=0, dropped=4)),
        ("error", [0, 1, 2], funrec.Counts(seen=3, recorded=3, skipped=0, dropped=0)),
    ],
)
def test_overflow_policies_keep_the_core_frames_and_counts(
    overflow, expected_stamps, expected_counts
):
    rec = funrec_jax.frames(max_frames=3, overflow=overflow)
    state = scan_fold(rec, stream(7))
    core = funrec_jax.export(state, strict=False)
    assert stamps(core) == expected_stamps
    assert funrec.counts(core) == expected_counts
    assert int(state.refused.full) == (4 if overflow == "error" else 0)


def test_a_full_ring_under_error_is_reported_at_export_and_nothing_is_lost():
    rec = funrec_jax.frames(max_frames=2, overflow="error")
    state = scan_fold(rec, stream(5))
    with pytest.raises(BufferFullError, match=r"refused 3 item\(s\).*ring of 2.*strict=False"):
        funrec_jax.export(state)
    assert stamps(funrec_jax.export(state, strict=False)) == [0, 1]


def test_integer_frames_out_of_range_are_refused_and_reported_like_the_core():
    frames = [jnp.full((5, 6, 3), v, jnp.int16) for v in (10, 300, -1, 20)]
    steps = [{"pixels": f} for f in frames]
    state = scan_fold(funrec_jax.frames(max_frames=8), steps)
    with pytest.raises(LayoutError, match=r"refused 2 frame\(s\) with integer values outside"):
        funrec_jax.export(state)
    core_rec = funrec.frames()
    core = core_rec.init()
    for f in frames:  # the core raises on each bad frame and keeps its state
        with contextlib.suppress(LayoutError):
            core = core_rec.step(core, TensorDict({"pixels": torch.tensor(np.asarray(f))}))
    jax_core = funrec_jax.export(state, strict=False)
    assert funrec.counts(jax_core) == funrec.counts(core) == funrec.Counts(2, 2, 0, 0)
    assert torch.equal(funrec.video(jax_core), funrec.video(core))


def test_float_frames_count_nonfinite_and_clipped_values_and_decide_the_scale_once():
    frames = [
        np.array([[[0.5, np.nan, 1.0]]], np.float32).repeat(5, 0).repeat(6, 1),
        np.array([[[2.0, np.inf, -1.0]]], np.float32).repeat(5, 0).repeat(6, 1),
    ]
    abstract = {"pixels": jax.ShapeDtypeStruct((5, 6, 3), jnp.float32)}
    rec = funrec_jax.frames(max_frames=4)
    state = rec.init(abstract)
    assert int(state.scale) == 0  # undecided: the first recorded frame decides
    for f in frames:
        state = jax.jit(rec.step)(state, {"pixels": jnp.asarray(f)})
    core_rec = funrec.frames()
    core = funrec.fold(core_rec, [TensorDict({"pixels": torch.from_numpy(f)}) for f in frames])
    mine = funrec_jax.export(state)
    assert mine.layout == core.layout and mine.layout.scale == 255
    assert (mine.nonfinite, mine.clipped) == (core.nonfinite, core.clipped) == (60, 60)
    assert torch.equal(funrec.video(mine), funrec.video(core))


def test_shape_and_dtype_problems_raise_at_trace_time_with_the_core_messages():
    rec = funrec_jax.frames(max_frames=4)
    state = rec.init({"pixels": stamped(0)})
    with pytest.raises(LayoutError, match=r"frames\('pixels'\): expected shape \(6, 8, 3\)"):
        jax.jit(rec.step)(state, {"pixels": jnp.zeros((6, 9, 3), jnp.uint8)})
    with pytest.raises(LayoutError, match=r"dtype uint8.*got shape .* and dtype float32"):
        jax.jit(rec.step)(state, {"pixels": jnp.zeros((6, 8, 3), jnp.float32)})
    with pytest.raises(LayoutError, match="ambiguous"):
        rec.init({"pixels": jnp.zeros((3, 5, 3), jnp.uint8)})
    with pytest.raises(LayoutError, match="reads as no frame layout"):
        rec.init({"pixels": jnp.zeros((5, 6, 7), jnp.uint8)})
    with pytest.raises(LayoutError, match="not supported"):
        rec.init({"pixels": jnp.zeros((4, 5, 3), jnp.complex64)})
    with pytest.raises(MissingKeyError, match=r"key 'pixels' is not in the data.*'obs'"):
        rec.init({"obs": jnp.zeros((4, 5, 3), jnp.uint8)})
    assert funrec.counts(funrec_jax.export(state)) == funrec.Counts()  # nothing changed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_frames": None}, "max_frames must be a positive integer: inside JAX"),
        ({"max_frames": 0}, "max_frames must be a positive integer"),
        ({"max_frames": 4, "skip": 0}, "skip must be an integer >= 1"),
        ({"max_frames": 4, "overflow": "drop"}, "overflow must be one of"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    with pytest.raises(RecorderError, match=message):
        funrec_jax.frames(**kwargs)


def test_eager_jit_scan_and_vmap_give_the_same_states():
    rec = funrec_jax.named(
        video=funrec_jax.frames(skip=2, max_frames=4, overflow="drop_oldest"),
        stats=funrec_jax.episode_stats(max_episodes=4),
        steps=funrec_jax.every(3, funrec_jax.tensordicts([("next", "reward")], max_steps=8)),
    )
    steps = stream(11, done_every=3)
    eager = funrec_jax.export(fold(rec, steps))
    jitted = funrec_jax.export(fold(rec, steps, jax.jit(rec.step)))
    scanned = funrec_jax.export(scan_fold(rec, steps))
    batch = [stacked([s, s]) for s in steps]  # two identical envs
    assert eager == jitted == scanned
    assert stamps(eager["video"]) == [4, 6, 8, 10]
    assert funrec.counts(eager["steps"]) == funrec.Counts(seen=11, recorded=4, skipped=7)
    state = jax.vmap(rec.init)(batch[0])
    for data in batch:
        state = jax.jit(jax.vmap(rec.step))(state, data)
    per_env = funrec_jax.export(state)
    assert len(per_env) == 2
    assert per_env[0]["video"] == eager["video"] == per_env[1]["video"]
    assert [e.env for e in funrec.episodes(per_env[1]["stats"])] == [1, 1, 1]
    assert funrec.episodes(eager["stats"]) == tuple(
        e._replace(env=0) for e in funrec.episodes(per_env[1]["stats"])
    )


def test_same_shaped_inputs_do_not_retrace():
    traces = []
    rec = funrec_jax.named(video=funrec_jax.frames(max_frames=4), stats=funrec_jax.episode_stats())

    @jax.jit
    def step(state, data):
        traces.append(1)
        return rec.step(state, data)

    steps = stream(12, done_every=5)
    state = fold(rec, steps, step)
    assert len(traces) == 1
    fold(rec, stream(3, shape=(6, 8, 3)), step)
    assert len(traces) == 1
    assert funrec.counts(funrec_jax.export(state)["video"]).seen == 12


def test_episode_stats_follow_the_core_per_sub_env():
    rewards = np.array([[1, 2], [3, 4], [5, 6], [7, 8]], np.float32)
    dones = np.array([[0, 1], [1, 0], [0, 1], [0, 0]], bool)
    steps = [
        {"next": {"reward": jnp.asarray(r)[:, None], "done": jnp.asarray(d)[:, None]}}
        for r, d in zip(rewards, dones, strict=True)
    ]
    state = scan_fold(funrec_jax.episode_stats(max_episodes=8), steps)
    core = funrec.fold(
        funrec.episode_stats(),
        [
            TensorDict(jax.tree.map(lambda x: torch.from_numpy(np.asarray(x)), s), [2])
            for s in steps
        ],
    )
    assert funrec_jax.export(state) == core


def test_episode_ring_overflow_uses_the_core_admission():
    steps = stream(9, done_every=1)  # every step ends an episode
    for overflow, kept in (("drop_newest", [0, 1]), ("drop_oldest", [7, 8])):
        core = funrec_jax.export(
            scan_fold(funrec_jax.episode_stats(max_episodes=2, overflow=overflow), steps)
        )
        assert [e.total_reward for e in funrec.episodes(core)] == kept
        assert funrec.counts(core) == funrec.Counts(seen=9, recorded=2, dropped=7)
    state = scan_fold(funrec_jax.episode_stats(max_episodes=2, overflow="error"), steps)
    with pytest.raises(BufferFullError, match="refused 7"):
        funrec_jax.export(state)


def test_gates_follow_the_core_rules():
    steps = stream(12, done_every=3)
    tds = [
        TensorDict(
            {
                "pixels": torch.from_numpy(np.asarray(s["pixels"])),
                "next": {
                    "reward": torch.tensor(float(s["next"]["reward"])),
                    "done": torch.tensor(bool(s["next"]["done"])),
                },
            }
        )
        for s in steps
    ]
    pairs = [
        (funrec_jax.every(5, funrec_jax.frames(max_frames=8)), funrec.every(5, funrec.frames())),
        (
            funrec_jax.when(
                lambda d: d["next"]["reward"] % 4 == 1, funrec_jax.frames(max_frames=8)
            ),
            funrec.when(lambda td: bool(td["next", "reward"] % 4 == 1), funrec.frames()),
        ),
        (
            funrec_jax.on_episodes(lambda ep: ep % 2 == 1, funrec_jax.frames(max_frames=8)),
            funrec.on_episodes(lambda ep: ep % 2 == 1, funrec.frames()),
        ),
        (
            funrec_jax.on_steps(lambda t: t % 5 == 1, funrec_jax.frames(max_frames=8), length=2),
            funrec.on_steps(lambda t: t % 5 == 1, funrec.frames(), length=2),
        ),
    ]
    for mine, theirs in pairs:
        core = funrec.fold(theirs, tds, theirs.init(tds[0]))
        assert funrec_jax.export(scan_fold(mine, steps)) == core


def test_a_refusal_in_one_named_recorder_keeps_the_others_unchanged_as_in_the_core():
    rec = funrec_jax.named(
        small=funrec_jax.frames(max_frames=2, overflow="error"),
        big=funrec_jax.every(1, funrec_jax.frames(max_frames=8)),
    )
    state = scan_fold(rec, stream(5))
    core = funrec_jax.export(state, strict=False)
    assert funrec.counts(core) == {
        "small": funrec.Counts(2, 2, 0, 0),
        "big": funrec.Counts(2, 2, 0, 0),
    }
    assert stamps(core["big"]) == [0, 1]


def test_tensordicts_export_a_core_trajectory():
    steps = [{"obs": jnp.arange(6.0).reshape(2, 3) + t, "t": jnp.int32(t)} for t in range(5)]
    rec = funrec_jax.tensordicts(max_steps=3, overflow="drop_oldest", batch_dims=1)
    with pytest.raises(RecorderError, match="batch_dims=1, but the arrays start with"):
        rec.init(steps[0])
    steps = [{**s, "t": jnp.full((2,), s["t"])} for s in steps]
    trajectory = funrec.trajectory(funrec_jax.export(scan_fold(rec, steps)))
    assert trajectory.batch_size == torch.Size([3, 2])
    assert trajectory["t"][:, 0].tolist() == [2, 3, 4]
    assert torch.equal(trajectory["obs"][0], torch.arange(6.0).reshape(2, 3) + 2)


def test_export_copies_out_of_jax_buffers():
    rec = funrec_jax.frames(max_frames=2)
    data = {"pixels": stamped(7)}
    state = rec.step(rec.init(data), data)
    video = funrec.video(funrec_jax.export(state))
    video.fill_(0)
    assert int(state.items[0, 0, 0, 0]) == 7


def test_the_core_views_read_funrec_jax_states():
    rec = funrec_jax.named(video=funrec_jax.frames(max_frames=4), stats=funrec_jax.episode_stats())
    state = scan_fold(rec, stream(6, done_every=3))
    core = funrec_jax.export(state)
    assert torch.equal(funrec.video(state["video"]), funrec.video(core["video"]))
    assert funrec.episodes(state["stats"]) == funrec.episodes(core["stats"])
    items, drained = funrec.drain(state)
    assert len(items["video"]) == 4 and int(drained["video"].held) == 0
    counts = jax.jit(lambda s: funrec.counts(s)["video"])(state)  # traced counts, inside jit
    assert int(counts.seen) == 6 and int(counts.dropped) == 2
    batched = jax.vmap(rec.init)(stacked(stream(2)))
    with pytest.raises(RecorderError, match="stepped under vmap"):
        funrec.video(batched["video"])


def test_export_inside_jit_says_to_export_on_the_host():
    rec = funrec_jax.frames(max_frames=2)
    data = {"pixels": stamped(1)}
    with pytest.raises(RecorderError, match="export runs on the host"):
        jax.jit(lambda s: funrec_jax.export(s))(rec.init(data))
