"""Record Craftax-Classic (pixels) inside jax.jit: one mp4 per env and episode statistics.

A random policy plays ``Craftax-Classic-Pixels-v1`` (63x63x3 float32 pixels in
[0, 1]) in N envs under ``jit(scan(vmap))``. funrec_jax records every frame into a
ring per env; the float stream's scale (255, its values are [0, 1]) is decided
on the first recorded frame by the core's layout rule and kept in the state.
Every K steps an ordered io_callback hands the rings to N mp4 writers opened
before the jitted call; the last partial chunk is written after it. Episode
returns and lengths stay in the state and are printed.

    python examples/jax_craftax.py --envs 4 --steps 96 --chunk 32 --out craftax_videos

Needs the ``craftax`` extra in its own venv (craftax installs ``pygame``, which
replaces the ``pygame-ce`` of the ``envs`` extra; see docs/jax.md). The first
run renders Craftax's texture cache (about a minute) and compiling the scan takes
a few minutes more on CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import funrec_jax
import jax
import jax.numpy as jnp
from craftax.craftax_env import make_craftax_env_from_name

import funrec
from funrec.writers import open_video

ENV = "Craftax-Classic-Pixels-v1"


def record(envs: int, steps: int, chunk: int, out: Path, max_steps: int = 32, seed: int = 0):
    """Runs ``steps`` steps of ``envs`` envs in one jitted scan, recording each env.

    Returns:
        ``(state, observations)``: the final funrec_jax state (batched by env) and
        the observations the envs produced, float32 ``[steps, envs, 63, 63, 3]``.
    """
    env = make_craftax_env_from_name(ENV, auto_reset=True)
    params = env.default_params.replace(max_timesteps=max_steps)  # several episodes per env
    recorder = funrec_jax.named(
        video=funrec_jax.frames("pixels", max_frames=chunk),
        stats=funrec_jax.episode_stats(max_episodes=steps),
    )

    def data(obs, reward, done):
        return {"pixels": obs, "next": {"reward": reward, "done": done}}

    out.mkdir(parents=True, exist_ok=True)
    writers = [open_video(out / f"env{i}.mp4", fps=8) for i in range(envs)]

    def rollout(key):
        key, *reset_keys = jax.random.split(key, envs + 1)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jnp.stack(reset_keys), params)
        zeros = jnp.zeros(envs)
        state = jax.vmap(recorder.init)(data(obs, zeros, zeros.astype(bool)))

        def body(carry, t):
            env_state, state, key = carry
            key, act, step = jax.random.split(key, 3)
            actions = jax.random.randint(act, (envs,), 0, env.action_space(params).n)
            obs, env_state, reward, done, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(step, envs), env_state, actions, params
            )
            state = jax.vmap(recorder.step)(state, data(obs, reward, done))
            state = funrec_jax.write_drained(
                state, [{"video": w} for w in writers], when=t % chunk == chunk - 1
            )
            return (env_state, state, key), obs

        (_, state, _), observations = jax.lax.scan(body, (env_state, state, key), jnp.arange(steps))
        return state, observations

    state, observations = jax.jit(rollout)(jax.random.key(seed))
    funrec_jax.finish(state, [{"video": w} for w in writers])  # the last partial chunk
    return state, observations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=96)
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--max-steps", type=int, default=32, help="episode length limit")
    parser.add_argument("--out", type=Path, default=Path("craftax_videos"))
    args = parser.parse_args()
    state, _ = record(args.envs, args.steps, args.chunk, args.out, args.max_steps)
    for i, env_state in enumerate(funrec_jax.export(state)):
        episodes = funrec.episodes(env_state["stats"])
        returns = [round(e.total_reward, 3) for e in episodes]
        print(f"env {i}: {args.out / f'env{i}.mp4'}, {len(episodes)} episodes, returns {returns}")


if __name__ == "__main__":
    main()
