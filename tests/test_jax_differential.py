"""Differential properties: the JAX fold, exported, equals the core's eager fold.

For random rollouts (the core's Hypothesis strategies) and every skip / capacity /
overflow / gate combination, frame for frame, counter for counter, episodes
included; and eager, jit, scan and vmap folds of the same recorder agree.
"""

import functools
import math

import funrec_jax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import funrec
from funrec.errors import BufferFullError

try:
    from funrec.testing import strategies as fst
except ImportError:
    from funrec import strategies as fst

Layout = funrec.Layout

# A few layouts (every order, channel count, a batch, integer, bool and float
# dtypes JAX keeps without x64): few distinct shapes keep JAX's compile caches warm.
LAYOUTS = [
    Layout((), "HWC", 3, 5, 6, "uint8", 1),
    Layout((2,), "CHW", 4, 5, 6, "float32", 255),
    Layout((), "HW", 1, 5, 6, "bool", 255),
    Layout((2,), "HWC", 1, 5, 6, "int16", 1),
    Layout((), "CHW", 3, 5, 6, "float16", 1),
    Layout((), "HWC", 4, 5, 6, "bfloat16", 255),
    Layout((2,), "HWC", 3, 5, 6, "uint16", 1),
]
OVERFLOWS = ("drop_newest", "drop_oldest", "error")


def gate(name, batched):
    """The same gate for the core (on TensorDicts) and for JAX (on dicts of arrays)."""
    if name == "every":
        return funrec.every(2), lambda r: funrec_jax.every(2, r)
    if name == "when":  # a threshold away from 0: XLA on CPU flushes subnormal floats
        return (
            funrec.when(lambda td: bool(td["next", "reward"].sum() > 1)),
            lambda r: funrec_jax.when(lambda d: jnp.sum(d["next"]["reward"]) > 1, r),
        )
    if name == "on_episodes" and not batched:
        return (
            funrec.on_episodes(lambda ep: ep % 2 == 0),
            lambda r: funrec_jax.on_episodes(lambda ep: ep % 2 == 0, r),
        )
    if name == "on_steps":
        return (
            funrec.on_steps(lambda t: t % 3 == 0, length=2),
            lambda r: funrec_jax.on_steps(lambda t: t % 3 == 0, r, length=2),
        )
    return (lambda r: r), (lambda r: r)


@st.composite
def configs(draw):
    layout = draw(st.sampled_from(LAYOUTS))
    steps = draw(fst.rollouts(layout=layout, min_steps=1, max_steps=10))
    return {
        "steps": steps,
        "skip": draw(st.sampled_from([1, 2, 3])),
        "capacity": draw(st.sampled_from([1, 2, 4])),
        "overflow": draw(st.sampled_from(OVERFLOWS)),
        "episodes": draw(st.sampled_from([1, 3, 16])),
        "episode_overflow": draw(st.sampled_from(OVERFLOWS)),
        "gate": draw(st.sampled_from([None, "every", "when", "on_episodes", "on_steps"])),
        "abstract": draw(st.booleans()),
    }


def recorders(c, batched):
    """``(core, jax)`` pairs of recorders: the gated frames, and the episode statistics."""
    core_gate, jax_gate = gate(c["gate"], batched)
    frames = dict(skip=c["skip"], max_frames=c["capacity"], overflow=c["overflow"])
    stats = dict(max_episodes=c["episodes"], overflow=c["episode_overflow"])
    return {
        "video": (
            core_gate(funrec.frames("pixels", **frames)),
            jax_gate(funrec_jax.frames("pixels", **frames)),
        ),
        "stats": (funrec.episode_stats(**stats), funrec_jax.episode_stats(**stats)),
    }


def named_jax(c):
    return funrec_jax.named(**{name: pair[1] for name, pair in recorders(c, False).items()})


def to_jax(td):
    def one(t):
        if t.dtype == torch.bfloat16:
            return jnp.asarray(t.float().numpy(), dtype=jnp.bfloat16)
        return jnp.asarray(t.numpy())

    return {
        "pixels": one(td["pixels"]),
        "next": {"reward": one(td["next", "reward"]), "done": one(td["next", "done"])},
    }


def core_fold(rec, steps, abstract):
    """The core's fold; a step that raises (a full buffer under "error", as the JAX
    recorders refuse it) leaves the state as it was."""
    state = rec.init() if abstract else rec.init(steps[0])
    refused = 0
    for td in steps:
        try:
            state = rec.step(state, td)
        except BufferFullError:
            refused += 1
    return state, refused


def jax_init(rec, data, abstract):
    if abstract:
        data = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), data)
    return rec.init(data)


def assert_same(mine, core):
    """A JAX fold, exported, against the core's: frames, layout, counts and episodes."""
    assert {k: funrec.counts(v) for k, v in mine.items()} == {
        k: funrec.counts(v) for k, v in core.items()
    }
    assert torch.equal(funrec.video(mine["video"]), funrec.video(core["video"]))
    inner, theirs = mine["video"], core["video"]
    while isinstance(inner, funrec.GateState):
        assert inner._replace(inner=None) == theirs._replace(inner=None)
        inner, theirs = inner.inner, theirs.inner
    assert (inner.layout, inner.nonfinite, inner.clipped) == (
        theirs.layout,
        theirs.nonfinite,
        theirs.clipped,
    )
    mine_eps, core_eps = funrec.episodes(mine["stats"]), funrec.episodes(core["stats"])
    assert [(e.env, e.length) for e in mine_eps] == [(e.env, e.length) for e in core_eps]
    for a, b in zip(mine_eps, core_eps, strict=True):  # JAX sums float32, the core float64
        assert math.isclose(a.total_reward, b.total_reward, rel_tol=1e-5, abs_tol=1e-4)
    mine_stats, core_stats = mine["stats"], core["stats"]
    assert mine_stats.running_length == core_stats.running_length
    assert np.allclose(mine_stats.running_reward, core_stats.running_reward, 1e-5, 1e-4)


@pytest.mark.filterwarnings("ignore:.*the float stream was read:RuntimeWarning")
@given(configs())
def test_the_jax_fold_equals_the_core_fold(c):
    steps = c["steps"]
    data = [to_jax(td) for td in steps]
    core, mine = {}, {}
    for name, (core_rec, jax_rec) in recorders(c, steps[0].batch_dims > 0).items():
        core[name], refused = core_fold(core_rec, steps, c["abstract"])
        state = jax_init(jax_rec, data[0], c["abstract"])
        for d in data:
            state = jax_rec.step(state, d)
        assert int(funrec_jax.combinators.refusals(state)) == refused
        mine[name] = funrec_jax.export(state, strict=False)
        if refused:
            with pytest.raises(BufferFullError):
                funrec_jax.export(state)
    assert_same(mine, core)


# Each configuration below compiles once (per layout); the examples reuse it.
FOLD_CONFIGS = (
    dict(
        skip=2,
        capacity=4,
        overflow="drop_oldest",
        episodes=2,
        episode_overflow="drop_oldest",
        gate="on_steps",
        abstract=False,
    ),
    dict(
        skip=1,
        capacity=2,
        overflow="error",
        episodes=16,
        episode_overflow="error",
        gate="when",
        abstract=True,
    ),
)


@functools.cache
def folds(index):
    """The recorder of a configuration, with its step jitted, scanned and vmapped."""
    c = FOLD_CONFIGS[index]
    rec = named_jax(c)

    def init(data):
        return jax_init(rec, data, c["abstract"])

    def scan(data):
        return jax.lax.scan(lambda s, d: (rec.step(s, d), None), init(first(data)), data)[0]

    return rec, init, jax.jit(rec.step), jax.jit(scan), jax.jit(jax.vmap(rec.step))


def first(stacked):
    return jax.tree.map(lambda x: x[0], stacked)


def stack(items):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *items)


@settings(max_examples=12)
@given(
    st.sampled_from([LAYOUTS[0], LAYOUTS[4]]).flatmap(
        lambda lay: st.lists(
            fst.rollouts(layout=lay, min_steps=6, max_steps=6), min_size=2, max_size=2
        )
    ),
    st.sampled_from(range(len(FOLD_CONFIGS))),
)
def test_eager_jit_scan_and_vmap_folds_agree(rollouts, index):
    rec, init, step, scan, vstep = folds(index)
    streams = [[to_jax(td) for td in steps] for steps in rollouts]
    vmapped = jax.vmap(init)(stack([data[0] for data in streams]))
    for t in range(6):
        vmapped = vstep(vmapped, stack([data[t] for data in streams]))
    per_env = funrec_jax.export(vmapped, strict=False)
    for env, data in enumerate(streams):
        eager = jit = init(data[0])
        for d in data:
            eager, jit = rec.step(eager, d), step(jit, d)
        expected = funrec_jax.export(eager, strict=False)
        assert funrec_jax.export(jit, strict=False) == expected
        assert funrec_jax.export(scan(stack(data)), strict=False) == expected
        # Under vmap each env has its state; export numbers the envs' episodes.
        mine = per_env[env]
        assert [e.env for e in funrec.episodes(mine["stats"])] == [env] * len(
            funrec.episodes(expected["stats"])
        )
        renumbered = tuple(e._replace(env=0) for e in funrec.episodes(mine["stats"]))
        assert renumbered == funrec.episodes(expected["stats"])
        assert mine["video"] == expected["video"]
        assert funrec.counts(mine) == funrec.counts(expected)
