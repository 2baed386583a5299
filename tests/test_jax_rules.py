"""One copy of each rule: the core's value rules, done-key rule and video schedule run
on numpy, torch and traced jax arrays, and funrec_jax calls them (no jnp twins)."""

import os
import tempfile
from pathlib import Path
from typing import NamedTuple

import funrec_jax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from funrec_jax import _arrays
from tensordict import TensorDict

import funrec
from funrec import rules
from funrec.errors import MissingKeyError, RecorderError
from funrec.layout import count_out_of_range, first_scale, in_range, to_uint8

# -- the layout value rules on every backend -------------------------------------------


def float_frames():
    """Float frames with NaN, +-inf, negatives, values above 1 and above 255, and [0, 1]."""
    rng = np.random.default_rng(0)
    unit = rng.random((5, 6, 3), dtype=np.float32)
    wild = (rng.random((5, 6, 3), dtype=np.float32) - 0.2) * 300
    wild[0, 0, 0], wild[1, 1, 1], wild[2, 2, 2] = np.nan, np.inf, -np.inf
    dark = np.zeros((5, 6, 3), np.float32)
    dark[0, 0, 0] = np.nan
    return {"unit": unit, "wild": wild, "dark": dark, "f16": unit.astype(np.float16)}


def integer_frames():
    good = np.arange(90, dtype=np.int16).reshape(5, 6, 3) * 2
    return {"good": good, "high": good + 200, "low": good - 1, "bool": good % 3 == 0}


def backends(x):
    """The same frame as numpy, torch, eager jax and a jit-traced jax function's input."""
    return {"numpy": x, "torch": torch.from_numpy(x.copy()), "jax": jnp.asarray(x)}


def as_numpy(value):
    return np.asarray(value.numpy() if isinstance(value, torch.Tensor) else value)


@pytest.mark.parametrize("name", sorted(float_frames()))
def test_float_value_rules_agree_on_numpy_torch_and_jax_under_jit(name):
    x = float_frames()[name]
    want_scale = 1 if name == "wild" else 255  # largest finite value > 1 only in "wild"
    for backend, frame in backends(x).items():
        scale = first_scale(frame)
        assert int(scale) == want_scale, backend
        for s in (1, 255):
            got = as_numpy(to_uint8(frame, s))
            expected = np.clip(np.round(np.nan_to_num(x.astype(np.float32) * s, nan=0.0)), 0, 255)
            np.testing.assert_array_equal(got, expected.astype(np.uint8), err_msg=backend)
            counts = [int(n) for n in count_out_of_range(frame, s)]
            finite = np.isfinite(x)
            scaled = x.astype(np.float32) * s
            clipped = finite & ((scaled < 0) | (scaled > 255))
            assert counts == [int((~finite).sum()), int(clipped.sum())], backend
    traced = jax.jit(
        lambda f: (first_scale(f), to_uint8(f, first_scale(f)), *count_out_of_range(f, 255))
    )(jnp.asarray(x))
    eager = (first_scale(x), to_uint8(x, first_scale(x)), *count_out_of_range(x, 255))
    for a, b in zip(traced, eager, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", sorted(integer_frames()))
def test_integer_value_rules_agree_on_numpy_torch_and_jax_under_jit(name):
    x = integer_frames()[name]
    fits = name in ("good", "bool")
    for backend, frame in backends(x).items():
        assert bool(in_range(frame)) is fits, backend
        assert first_scale(frame) == (255 if name == "bool" else 1)
        if fits:
            want = x.astype(np.uint8) * (255 if name == "bool" else 1)
            np.testing.assert_array_equal(as_numpy(to_uint8(frame, 1)), want, err_msg=backend)
        assert count_out_of_range(frame, 1) == (0, 0)
    assert bool(jax.jit(in_range)(jnp.asarray(x))) is fits


def test_funrec_jax_frames_keep_no_twin_of_the_value_rules():
    import funrec_jax.recorders as jax_recorders

    source = Path(jax_recorders.__file__).read_text()
    for twin in ("isfinite", "nan_to_num", "jnp.round", "jnp.clip", "<= 255"):
        assert twin not in source


# -- capped_cubic: one traceable schedule -------------------------------------------------


def python_schedule(episode: int) -> bool:
    """gymnasium's capped_cubic_video_schedule, as it is written there (branches)."""
    if episode < 1000:
        return round(episode ** (1.0 / 3)) ** 3 == episode
    return episode % 1000 == 0


def test_capped_cubic_is_the_python_schedule_on_ints_torch_and_traced_jax():
    episodes = range(5001)
    want = [python_schedule(e) for e in episodes]
    assert [funrec.capped_cubic(e) for e in episodes] == want
    assert all(type(funrec.capped_cubic(e)) is bool for e in (0, 2, 1000))
    assert funrec.capped_cubic(torch.arange(5001)).tolist() == want
    traced = jax.jit(jax.vmap(funrec.capped_cubic))(jnp.arange(5001, dtype=jnp.int32))
    assert np.asarray(traced).tolist() == want


def test_on_episodes_with_capped_cubic_inside_scan_equals_the_core():
    steps = [  # episodes of 2 steps: the 0th, 1st and 8th are recorded
        {"pixels": jnp.full((5, 6, 3), t % 256, jnp.uint8), "done": jnp.bool_(t % 2 == 1)}
        for t in range(20)
    ]
    rec = funrec_jax.on_episodes(funrec.capped_cubic, funrec_jax.frames(max_frames=32))
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *steps)
    state = jax.jit(lambda s, xs: jax.lax.scan(lambda s, d: (rec.step(s, d), None), s, xs)[0])(
        rec.init(steps[0]), stacked
    )
    core_rec = funrec.on_episodes(funrec.capped_cubic, funrec.frames())
    core = funrec.fold(
        core_rec,
        [TensorDict(jax.tree.map(torch.from_numpy, jax.tree.map(np.array, s))) for s in steps],
    )
    mine = funrec_jax.export(state)
    assert funrec.video(mine)[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 16, 17]
    assert torch.equal(funrec.video(mine), funrec.video(core))
    assert funrec.counts(mine) == funrec.counts(core)


# -- the done-key rule on pytrees --------------------------------------------------------


def nested_step(t):
    """A transition with done keys at three depths, plus look-alikes that are not done keys."""
    return {
        "done": jnp.asarray([True, True]),  # at the root of a transition: not read
        "next": {
            "reward": jnp.asarray([1.0, 2.0]),
            "done": jnp.asarray([[t == 1], [False]]),
            "agents": {"done": jnp.asarray([[False, t == 3], [t == 2, False]])},
            "done_not": jnp.asarray([True, True]),
            "deep": {"er": {"done": jnp.asarray([False, t == 4])}},
        },
    }


def test_done_keys_of_a_nested_dict_follow_the_core_rule():
    data = nested_step(0)
    assert set(_arrays.done_keys(data, "test")) == {  # JAX lists dict keys sorted
        ("next", "done"),
        ("next", "agents", "done"),
        ("next", "deep", "er", "done"),
    }
    td = TensorDict(jax.tree.map(lambda a: torch.from_numpy(np.array(a)), data), [2])
    assert set(rules.done_keys(td)) == set(_arrays.done_keys(data, "test"))
    for t in range(6):
        data = nested_step(t)
        td = TensorDict(jax.tree.map(lambda a: torch.from_numpy(np.array(a)), data), [2])
        keys = _arrays.done_keys(data, "test")
        mine = jax.jit(lambda d, keys=keys: _arrays.done_flags(d, keys, (2,), "test"))(data)
        assert np.asarray(mine).tolist() == rules.done_flags(td).tolist()
    env_step = {"reward": jnp.float32(0), "agents": {"done": jnp.bool_(True)}}  # no "next"
    assert _arrays.done_keys(env_step, "test") == (("agents", "done"),)


def test_episode_stats_and_on_episodes_read_every_done_key_of_a_nested_dict():
    steps = [nested_step(t) for t in range(6)]
    state = jax.jit(
        lambda xs: jax.lax.scan(
            lambda s, d: (funrec_jax.episode_stats().step(s, d), None),
            funrec_jax.episode_stats().init(steps[0]),
            xs,
        )[0]
    )(jax.tree.map(lambda *xs: jnp.stack(xs), *steps))
    mine = funrec_jax.export(state)
    tds = [TensorDict(jax.tree.map(lambda a: torch.from_numpy(np.array(a)), s), [2]) for s in steps]
    core = funrec.fold(funrec.episode_stats(), tds)
    assert funrec.episodes(mine) == funrec.episodes(core)
    assert [(e.env, e.length) for e in funrec.episodes(mine)] == [(0, 2), (1, 3), (0, 2), (1, 2)]
    assert set(mine.done_keys) == set(core.done_keys)


class BraxLikeState(NamedTuple):
    """A Brax/Playground-style env state: done and reward are fields, not dict keys."""

    obs: jax.Array
    reward: jax.Array
    done: jax.Array


def test_pytree_fields_named_done_are_done_keys_under_vmap():
    rec = funrec_jax.episode_stats(reward_key="reward", max_episodes=8)
    envs = 3

    def env_state(t):
        e = jnp.arange(envs)
        return BraxLikeState(jnp.zeros((envs, 2)), jnp.ones(envs), (t + e) % 3 == 2)

    state = jax.vmap(rec.init)(env_state(0))
    for t in range(6):
        state = jax.jit(jax.vmap(rec.step))(state, env_state(t))
    per_env = funrec_jax.export(state)
    assert [[e.length for e in funrec.episodes(s)] for s in per_env] == [[3, 3], [2, 3], [1, 3]]
    assert per_env[0].done_keys == (("done",),)


def test_a_bad_done_shape_names_the_key_and_the_batch():
    data = {"next": {"reward": jnp.zeros(4), "done": jnp.zeros(3, bool)}}
    with pytest.raises(RecorderError, match=r"key \('next', 'done'\) has shape \(3,\).*\(4,\)"):
        funrec_jax.episode_stats().init(data)


# -- a real XLand-MiniGrid TimeStep ---------------------------------------------------------

os.environ.setdefault(
    "XLAND_MINIGRID_CACHE", str(Path(tempfile.gettempdir()) / "funrec-xland-minigrid-cache")
)
import xminigrid  # noqa: E402 - the envs extra installs it; it reads the cache path on import


@pytest.fixture(scope="module")
def xland():
    env, params = xminigrid.make("MiniGrid-DoorKey-5x5")
    return env, params.replace(max_steps=6)


def test_a_timestep_has_no_done_leaf_and_the_error_says_what_to_pass(xland):
    env, params = xland
    timestep = env.reset(params, jax.random.key(0))
    with pytest.raises(MissingKeyError, match=r"step_type.*timestep\.last\(\)"):
        funrec_jax.episode_stats(reward_key="reward").init(timestep)
    # step_type, reward, ... are read by their field names through the pytree's key paths
    assert _arrays.read({"ts": timestep}, ("ts", "state", "agent", "direction"), "test") is (
        timestep.state.agent.direction
    )


def test_episode_stats_on_real_xland_timesteps_under_jit_scan_vmap(xland):
    env, params = xland
    envs, steps = 3, 20
    rec = funrec_jax.named(
        stats=funrec_jax.episode_stats(reward_key=("timestep", "reward"), max_episodes=16),
        firsts=funrec_jax.on_episodes(
            funrec.capped_cubic,
            funrec_jax.tensordicts([("timestep", "step_type")], max_steps=steps),
        ),
    )
    from xminigrid.wrappers import GymAutoResetWrapper

    wrap = GymAutoResetWrapper(env)

    def data(timestep):
        return {"timestep": timestep, "done": timestep.last()}  # the TimeStep's own leaves stay

    @jax.jit
    def rollout(key):
        reset = jax.vmap(wrap.reset, in_axes=(None, 0))(params, jax.random.split(key, envs))
        state = jax.vmap(rec.init)(data(reset))

        def body(carry, key):
            timestep, state = carry
            actions = jax.random.randint(key, (envs,), 0, env.num_actions(params))
            timestep = jax.vmap(wrap.step, in_axes=(None, 0, 0))(params, timestep, actions)
            return (timestep, jax.vmap(rec.step)(state, data(timestep))), timestep

        (_, state), seen = jax.lax.scan(body, (reset, state), jax.random.split(key, steps))
        return state, seen

    state, seen = rollout(jax.random.key(1))
    step_type, reward = np.asarray(seen.step_type), np.asarray(seen.reward)
    for i, env_state in enumerate(funrec_jax.export(state)):
        # the reference: episodes cut where the TimeStep says LAST (step_type 2)
        want, total, length = [], 0.0, 0
        for t in range(steps):
            total, length = total + float(reward[t, i]), length + 1
            if step_type[t, i] == 2:
                want.append((i, length))
                total, length = 0.0, 0
        assert [(e.env, e.length) for e in funrec.episodes(env_state["stats"])] == want
        assert len(want) >= 3  # max_steps=6: several episodes in 20 steps
        assert env_state["stats"].done_keys == (("done",),)
        # episodes 0 and 1 (capped_cubic) pass the gate, then nothing until episode 8
        kept = funrec.trajectory(env_state["firsts"])["timestep", "step_type"].tolist()
        assert kept == step_type[: want[0][1] + want[1][1], i].tolist()
