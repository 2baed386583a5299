"""Record XLand-MiniGrid inside jax.jit: one mp4 per env and episode statistics.

A random policy plays ``MiniGrid-DoorKey-5x5`` with RGB observations (224x224x3
uint8) in N envs under ``jit(scan(vmap))``. funrec_jax records every frame into a
ring per env; every K steps an ordered io_callback hands the rings to N mp4
writers opened before the jitted call, and the last partial chunk is written
after it. Episode returns and lengths stay in the state and are printed.

    python examples/jax_xland.py --envs 4 --steps 64 --chunk 16 --out xland_videos

XLand-MiniGrid builds a cache of rendered tiles on first import (in
``$XLAND_MINIGRID_CACHE``, by default ``~/.xland_minigrid``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import funrec_jax
import jax
import jax.numpy as jnp
import xminigrid
from xminigrid.experimental.img_obs import RGBImgObservationWrapper
from xminigrid.wrappers import GymAutoResetWrapper

import funrec
from funrec.writers import open_video


def record(envs: int, steps: int, chunk: int, out: Path, max_steps: int = 16, seed: int = 0):
    """Runs ``steps`` steps of ``envs`` envs in one jitted scan, recording each env.

    Returns:
        ``(state, observations)``: the final funrec_jax state (batched by env) and
        the observations the envs produced, uint8 ``[steps, envs, 224, 224, 3]``.
    """
    env, params = xminigrid.make("MiniGrid-DoorKey-5x5")
    env = GymAutoResetWrapper(RGBImgObservationWrapper(env))
    params = params.replace(max_steps=max_steps)  # short episodes: several per env
    recorder = funrec_jax.named(
        video=funrec_jax.frames("pixels", max_frames=chunk),
        stats=funrec_jax.episode_stats(max_episodes=steps),
    )

    def data(timestep):
        return {
            "pixels": timestep.observation,
            "next": {"reward": timestep.reward, "done": timestep.last()},
        }

    out.mkdir(parents=True, exist_ok=True)
    # The frame size, known before anything runs: each writer starts ffmpeg now, not inside JAX.
    size = jax.eval_shape(env.reset, params, jax.random.key(0)).observation.shape[:2]
    writers = [open_video(out / f"env{i}.mp4", fps=8, size=size) for i in range(envs)]

    def rollout(key):
        key, *reset_keys = jax.random.split(key, envs + 1)
        timestep = jax.vmap(env.reset, in_axes=(None, 0))(params, jnp.stack(reset_keys))
        state = jax.vmap(recorder.init)(data(timestep))

        def body(carry, t):
            timestep, state, key = carry
            key, act = jax.random.split(key)
            actions = jax.random.randint(act, (envs,), 0, env.num_actions(params))
            timestep = jax.vmap(env.step, in_axes=(None, 0, 0))(params, timestep, actions)
            state = jax.vmap(recorder.step)(state, data(timestep))
            state = funrec_jax.write_drained(
                state, [{"video": w} for w in writers], when=t % chunk == chunk - 1
            )
            return (timestep, state, key), timestep.observation

        (_, state, _), observations = jax.lax.scan(body, (timestep, state, key), jnp.arange(steps))
        return state, observations

    state, observations = jax.jit(rollout)(jax.random.key(seed))
    funrec_jax.finish(state, [{"video": w} for w in writers])  # the last partial chunk
    return state, observations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("xland_videos"))
    args = parser.parse_args()
    state, _ = record(args.envs, args.steps, args.chunk, args.out)
    for i, env_state in enumerate(funrec_jax.export(state)):
        episodes = funrec.episodes(env_state["stats"])
        returns = [round(e.total_reward, 3) for e in episodes]
        print(f"env {i}: {args.out / f'env{i}.mp4'}, {len(episodes)} episodes, returns {returns}")


if __name__ == "__main__":
    main()
