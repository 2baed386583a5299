"""``funrec record``: a rollout of a gymnasium env, recorded into a run directory.

One ``funrec.named(...)`` recorder folds every transition of the rollout: the
video, one video per sub-env, the trajectory (every key but the rendered
frames), the episode statistics and the frames sampled for the contact sheet.
After each step ``write_drained`` hands what the state holds to the writers, so
memory does not grow with the rollout.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import gymnasium
import torch
from funrec_torchrl import PixelRenderTransform
from tensordict import TensorDictBase
from torchrl.envs import EnvBase, GymEnv, SerialEnv
from tqdm import tqdm

import funrec
from funrec.writers import TrajectoryWriter, open_video, write_drained
from funrec_cli import sheet
from funrec_cli.errors import CliError
from funrec_cli.inspection import disk_bytes, episode_summary, human_size

RENDER_KEY = "rendered"
"""Where ``PixelRenderTransform`` puts each rendered frame (ALE envs already use "pixels")."""


def record(args: argparse.Namespace) -> tuple[Path, bool]:
    """Records ``args.steps`` steps of ``args.env`` into a run directory.

    Args:
        args: the parsed ``funrec record`` options (see ``funrec record --help``).

    Returns:
        ``(run_directory, interrupted)``: interrupted is True when Ctrl-C stopped
        the rollout early (what was recorded until then is in the directory).

    Raises:
        CliError: an unknown env, an env without rgb_array rendering, an
            unusable run directory.
    """
    run = args.out or _default_out(args.env)
    env, render_fps = make_env(args.env, args.num_envs)
    try:
        if args.seed is not None:
            env.set_seed(args.seed)
            torch.manual_seed(args.seed)
        try:
            run.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CliError(
                f"--out: cannot create the run directory {str(run)!r} ({err.strerror or err}); "
                "choose a writable directory"
            ) from err
        fps = args.fps or (render_fps / args.skip if render_fps else 30.0)
        return run, _record(env, run, fps, args)
    finally:
        env.close()


def make_env(env_id: str, num_envs: int) -> tuple[EnvBase, float | None]:
    """A TorchRL env of ``num_envs`` copies of ``env_id`` rendering into :data:`RENDER_KEY`.

    Returns:
        The env (a ``GymEnv``, or a ``SerialEnv`` of them) and gymnasium's
        ``render_fps`` for it (None when the env declares none).

    Raises:
        CliError: the id is not registered, the env cannot be made, or it
            cannot render ``rgb_array`` frames.
    """
    try:
        probe = GymEnv(env_id, render_mode="rgb_array")
    except gymnasium.error.UnregisteredEnv as err:
        raise CliError(f"--env {env_id!r} is not a registered gymnasium env: {err}") from err
    except Exception as err:
        raise CliError(f"--env {env_id!r} could not be made: {type(err).__name__}: {err}") from err
    metadata = getattr(probe, "metadata", None) or {}
    modes = list(metadata.get("render_modes", []))
    if "rgb_array" not in modes:
        probe.close()
        raise CliError(
            f"--env {env_id!r} cannot render frames: its render modes are {modes}, without "
            "'rgb_array'; choose an env that renders rgb_array images"
        )
    fps = float(metadata["render_fps"]) if metadata.get("render_fps") else None

    def rendering(env: EnvBase) -> EnvBase:
        return env.append_transform(PixelRenderTransform(out_keys=[RENDER_KEY]))

    if num_envs == 1:
        return rendering(probe), fps
    probe.close()
    return SerialEnv(num_envs, lambda: rendering(GymEnv(env_id, render_mode="rgb_array"))), fps


def recorder(
    num_envs: int, skip: int, max_frames: int | None, samples: Sequence[int]
) -> funrec.Recorder:
    """Everything a run records, in one ``named(...)``.

    ``video``: every ``skip``-th frame (sub-envs tiled into a grid); ``env<i>``:
    the same for sub-env ``i`` alone (batched envs only); ``steps``: every
    transition without its frames; ``stats``: finished episodes; ``sheet``: the
    frames of the ``samples`` steps, for the contact sheet.
    """

    def frames() -> funrec.Recorder:
        return funrec.frames(RENDER_KEY, skip=skip, max_frames=max_frames)

    per_env = {
        f"env{i}": funrec.map_td(lambda td, i=i: td[i], frames())
        for i in range(num_envs if num_envs > 1 else 0)
    }
    return funrec.named(
        video=frames(),
        **per_env,
        steps=funrec.map_td(_without_frames, funrec.tensordicts()),
        stats=funrec.episode_stats(),
        sheet=funrec.on_steps(frozenset(samples).__contains__, funrec.frames(RENDER_KEY), length=1),
    )


def _without_frames(td: TensorDictBase) -> TensorDictBase:
    return td.exclude(RENDER_KEY, ("next", RENDER_KEY))


def _record(env: EnvBase, run: Path, fps: float, args: argparse.Namespace) -> bool:
    samples = sheet.sample_steps(args.steps)
    rec = recorder(args.num_envs, args.skip, args.max_frames, samples)
    names = {"video": f"video.{args.format}"}
    if args.num_envs > 1:
        names.update({f"env{i}": f"video_env{i}.{args.format}" for i in range(args.num_envs)})
    policy = args.policy.fn if args.policy else env.rand_action
    started = time.monotonic()
    with ExitStack() as files:
        videos = {
            name: files.enter_context(
                open_video(run / path, fps, format=args.format, metadata={"env": args.env})
            )
            for name, path in names.items()
        }
        store = files.enter_context(TrajectoryWriter(run / "trajectory"))
        # With --max-frames the frames are held (at most that many) and written at the end.
        streamed = {"steps": store, **({} if args.max_frames else videos)}
        state, steps, interrupted = rec.init(), 0, False
        progress = _Progress(args.steps, run, quiet=args.quiet)
        with _StopOnCtrlC() as ctrl_c, progress:
            td = env.reset()
            while steps < args.steps and not ctrl_c.requested:
                td, root = env.step_and_maybe_reset(policy(td))
                state = write_drained(rec.step(state, td), streamed)
                td, steps = root, steps + 1
                progress.step(funrec.counts(state["video"]).recorded)
            interrupted = ctrl_c.requested
        state = write_drained(state, {"steps": store, **videos})
    episodes = funrec.episodes(state["stats"])
    _write_episodes(run / "episodes.csv", episodes)
    sheet_name = _write_sheet(run, state, samples, episodes, args.env, args.num_envs, steps)
    summary = {
        "env": args.env,
        "num_envs": args.num_envs,
        "steps": steps,
        "requested_steps": args.steps,
        "interrupted": interrupted,
        "policy": args.policy.spec if args.policy else "random",
        "seed": args.seed,
        "fps": fps,
        "skip": args.skip,
        "max_frames": args.max_frames,
        "wall_time_s": round(time.monotonic() - started, 3),
        "files": {
            "video": names["video"],
            "env_videos": [names[f"env{i}"] for i in range(args.num_envs) if f"env{i}" in names],
            "trajectory": "trajectory",
            "episodes": "episodes.csv",
            "contact_sheet": sheet_name,
        },
        "frames": funrec.counts(state["video"])._asdict(),
        "episodes": episode_summary(episodes),
        "funrec_version": funrec.__version__,
    }
    (run / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return interrupted


def _write_episodes(path: Path, episodes: Sequence[funrec.Episode]) -> None:
    """One row per finished episode, in the order they finished; ``episode`` counts per env."""
    seen: Counter[int] = Counter()
    with open(path, "w", newline="") as file:
        rows = csv.writer(file)
        rows.writerow(["env", "episode", "return", "length"])
        for e in episodes:
            rows.writerow([e.env, seen[e.env], e.total_reward, e.length])
            seen[e.env] += 1


def _write_sheet(
    run: Path,
    state: Any,
    samples: Sequence[int],
    episodes: Sequence[funrec.Episode],
    env_id: str,
    num_envs: int,
    steps: int,
) -> str | None:
    frames = funrec.video(state["sheet"])
    if not len(frames):
        return None
    stats = episode_summary(episodes)
    mean = f"mean return {stats['mean_return']:.4g}" if stats["finished"] else "no episode ended"
    title = f"{env_id} x{num_envs} · {steps} steps · {stats['finished']} episodes · {mean}"
    captions = sheet.labels(samples[: len(frames)], episodes, num_envs)
    sheet.contact_sheet(frames, captions, title).save(run / "contact_sheet.png")
    return "contact_sheet.png"


def _default_out(env_id: str) -> Path:
    """``runs/<env>-<timestamp>``, with ``-2``, ``-3``... when that name is taken."""
    base = f"{re.sub(r'[^A-Za-z0-9._-]+', '-', env_id)}-{datetime.now():%Y%m%d-%H%M%S}"
    out, n = Path("runs") / base, 1
    while out.exists():
        n += 1
        out = Path("runs") / f"{base}-{n}"
    return out


class _StopOnCtrlC:
    """The first Ctrl-C asks the loop to stop after its step; a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False

    def __enter__(self) -> _StopOnCtrlC:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


class _Progress:
    """A tqdm bar on stderr (steps, frames/s, bytes written, ETA), off when quiet or not a TTY."""

    def __init__(self, total: int, run: Path, *, quiet: bool) -> None:
        self.run = run
        self.bar = tqdm(
            total=total,
            unit="step",
            file=sys.stderr,
            disable=quiet or not sys.stderr.isatty(),
            leave=False,
            dynamic_ncols=True,
        )
        self.started = self.shown = time.monotonic()

    def step(self, frames: int) -> None:
        self.bar.update(1)
        now = time.monotonic()
        if not self.bar.disable and now - self.shown >= 0.5:
            self.shown = now
            rate = frames / (now - self.started)
            written = human_size(disk_bytes(self.run))
            self.bar.set_postfix_str(f"{rate:.0f} frames/s, {written} written", refresh=False)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()
