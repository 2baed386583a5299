"""Scenario 8: recording inside ``jax.jit``: a jitted scan with funrec_jax vs the same scan without.

Two rollouts, each jitted three ways and measured side by side:

* (a) synthetic: a scan of T steps whose body renders an 84x84x3 uint8 frame from
  the step index and sums it (a cheap stand-in for an env and a policy reading it);
* (b) XLand-MiniGrid ``MiniGrid-DoorKey-5x5`` with RGB observations (224x224x3
  uint8), N envs under ``vmap``, random actions, T steps.

Contenders: the scan without recording; the same scan recording every frame into
a ring (``funrec_jax.frames``, plus ``episode_stats`` for XLand); and recording
with chunked streaming (``funrec_jax.write_drained`` every K steps through an
ordered io_callback into ``.pt`` video writers, which keep raw frames, so that
encoding does not hide the cost of the handover). Compile time is lowering plus XLA compilation.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import funrec_jax
import jax
import jax.numpy as jnp

from benchmarks.harness import Config, Section, Stats, interleave, ratios
from funrec.writers import open_video

NAME = "jax_record"
PLAIN, RING, STREAM = "scan, no recording", "scan + funrec_jax ring", "scan + ring + streaming"
TARGET = 1.10


def _timed(run: Callable[[], Any], steps: int) -> Callable[[], float]:
    def measure() -> float:
        start = time.perf_counter()
        jax.block_until_ready(run())
        return (time.perf_counter() - start) / steps

    return measure


def _compiled(fn: Callable[..., Any], *args: Any) -> tuple[Callable[..., Any], float]:
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def synthetic(steps: int, chunk: int, workdir: Path) -> tuple[dict, dict, list]:
    """Contenders for the synthetic 84x84x3 scan."""
    ys, xs = jnp.mgrid[0:84, 0:84]

    def render(t):
        r = (xs * 3 + ys + t) % 256
        g = (xs * ys + 2 * t) % 256
        b = (xs ^ ys ^ t) % 256
        return jnp.stack([r, g, b], -1).astype(jnp.uint8)

    recorder = funrec_jax.frames("pixels", max_frames=chunk)
    example = {"pixels": render(0)}
    writer = open_video(workdir / "synthetic.pt")

    def rollout(record: bool, stream: bool):
        def run(state):
            def body(carry, t):
                state, checksum = carry
                frame = render(t)
                checksum = checksum + jnp.sum(frame, dtype=jnp.int32)  # the frame is used
                if record:
                    state = recorder.step(state, {"pixels": frame})
                if stream:
                    state = funrec_jax.write_drained(state, writer, when=t % chunk == chunk - 1)
                return (state, checksum), None

            (state, checksum), _ = jax.lax.scan(body, (state, jnp.int32(0)), jnp.arange(steps))
            return state, checksum

        return run

    state = recorder.init(example)
    return (*_contenders(rollout, (state,), steps), [writer])


def xland(envs: int, steps: int, chunk: int, workdir: Path) -> tuple[dict, dict, list]:
    """Contenders for XLand-MiniGrid DoorKey-5x5 with RGB observations under vmap."""
    import xminigrid
    from xminigrid.experimental.img_obs import RGBImgObservationWrapper
    from xminigrid.wrappers import GymAutoResetWrapper

    env, params = xminigrid.make("MiniGrid-DoorKey-5x5")
    env = GymAutoResetWrapper(RGBImgObservationWrapper(env))
    recorder = funrec_jax.named(
        video=funrec_jax.frames("pixels", max_frames=chunk),
        stats=funrec_jax.episode_stats(max_episodes=64),
    )
    writers = [open_video(workdir / f"xland{i}.pt") for i in range(envs)]

    def data(timestep):
        return {
            "pixels": timestep.observation,
            "next": {"reward": timestep.reward, "done": timestep.last()},
        }

    keys = jax.random.split(jax.random.key(0), envs)
    first = jax.vmap(env.reset, in_axes=(None, 0))(params, keys)
    state = jax.vmap(recorder.init)(data(first))

    def rollout(record: bool, stream: bool):
        def run(timestep, state):
            def body(carry, t):
                timestep, state, key = carry
                key, act = jax.random.split(key)
                actions = jax.random.randint(act, (envs,), 0, env.num_actions(params))
                timestep = jax.vmap(env.step, in_axes=(None, 0, 0))(params, timestep, actions)
                if record:
                    state = jax.vmap(recorder.step)(state, data(timestep))
                if stream:
                    state = funrec_jax.write_drained(
                        state, [{"video": w} for w in writers], when=t % chunk == chunk - 1
                    )
                return (timestep, state, key), None

            init = (timestep, state, jax.random.key(1))
            (timestep, state, _), _ = jax.lax.scan(body, init, jnp.arange(steps))
            return timestep.observation.sum(), state

        return run

    return (*_contenders(rollout, (first, state), steps), writers)


def _contenders(rollout, args, steps):
    out, compile_times = {}, {}
    for name, record, stream in ((PLAIN, False, False), (RING, True, False), (STREAM, True, True)):
        compiled, seconds = _compiled(rollout(record, stream), *args)
        compile_times[name] = seconds
        out[name] = _timed(lambda compiled=compiled: compiled(*args), steps)
    return out, compile_times


def run(cfg: Config) -> Section:
    """Measures each rollout three ways; target: recording <= 1.10x the plain scan."""
    os.environ.setdefault(
        "XLAND_MINIGRID_CACHE", str(Path(tempfile.gettempdir()) / "funrec-xland-minigrid-cache")
    )
    cases = {
        f"synthetic 84x84x3, T={cfg.size(1000, 64)}, ring {cfg.size(64, 16)}": lambda: synthetic(
            cfg.size(1000, 64), cfg.size(64, 16), cfg.workdir
        ),
    }
    if not cfg.quick:  # compiling XLand takes tens of seconds: not for the smoke test
        cases["XLand DoorKey-5x5 224x224x3, N=8, T=128, ring 32"] = lambda: xland(
            8, 128, 32, cfg.workdir
        )
    rows, checks, met = [], [], True
    for case, build in cases.items():
        contenders, compile_times, writers = build()
        m = interleave(contenders, cfg.repeats)
        for w in writers:
            w.close()
        for name, values in m.items():
            over = ratios(values, m[PLAIN])
            if name != PLAIN:
                ok = over.median <= TARGET
                met = met and ok
                checks.append(
                    f"{case.split(',')[0]} {name.removeprefix('scan + ')} "
                    f"{over.median:.2f}x{'' if ok else ' (over)'}"
                )
            rows.append(
                [
                    case,
                    name,
                    Stats.of(values).show(1e6),
                    over.show(digits=2),
                    f"{compile_times[name]:.2f}",
                ]
            )
    return Section(
        title="9. Recording inside jax.jit (funrec_jax)",
        target=f"recording costs at most {TARGET:.2f}x the same jitted scan without "
        "recording, with and without chunked streaming; compile time reported.",
        verdict=f"{'met' if met else 'not met'}: " + "; ".join(checks),
        headers=["rollout", "contender", "µs/step", "/ no recording", "compile s"],
        rows=rows,
        notes=[
            "A step writes one frame slot of the ring (`jnp.where` on the frame, an "
            "always-written index), never the buffer; under `vmap` each env has its ring. "
            "Streaming: every K steps (K = the ring's capacity) an ordered "
            "`jax.experimental.io_callback` under `lax.cond` hands the rings to the host, "
            "which exports them (dlpack, then a copy) and writes them to open `.pt` video "
            "writers (raw frames kept in memory: the handover is measured, not an encoder); the "
            "rings are then emptied by resetting their count. CPU backend, jax "
            f"{jax.__version__}.",
            "Under `vmap` each env's write is one in-place `dynamic_update_slice` (a "
            "`custom_vmap` rule): vmap's own batching of the write is a scatter, which XLA's "
            "CPU backend runs element by element (10x the XLand rollout when we tried it). "
            "The synthetic step does almost nothing, so the ring's fixed bookkeeping (some "
            "twenty scalar operations) shows there. Streaming copies each chunk out of JAX, "
            "again when the core stacks it for the writer and once more in the `.pt` writer, "
            "and waits for the callback's thread.",
        ],
    )
