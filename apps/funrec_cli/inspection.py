"""``funrec inspect``: what a video, a trajectory store or a run directory holds.

Each ``describe_*`` function returns a JSON-ready dict (what ``--json`` prints);
:func:`render` turns one into the lines a person reads.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

import funrec
from funrec.writers import load, partials, read_video, sidecar_path
from funrec_cli.errors import CliError

VIDEO_SUFFIXES = (".mp4", ".gif", ".pt", ".memmap")


def describe(path: Path) -> dict[str, Any]:
    """Describes a run directory, a trajectory store or a video, whichever ``path`` is.

    Raises:
        CliError: ``path`` does not exist (naming the partial files a writer
            left in its place) or is none of the three.
    """
    if not path.exists():
        unfinished = partials(path)
        if unfinished:
            raise CliError(
                f"{str(path)!r} does not exist: its writer has not finished (or was killed). "
                f"Its frames are in {', '.join(repr(str(p)) for p in unfinished)}; "
                f"inspect that: funrec inspect {unfinished[-1]}"
            )
        raise CliError(f"{str(path)!r} does not exist")
    if (path / "summary.json").is_file():
        return describe_run(path)
    if (path / "index.json").is_file():
        return describe_store(path)
    if sidecar_path(path).is_file() or path.suffix.lower() in VIDEO_SUFFIXES:
        return describe_video(path)
    raise CliError(
        f"{str(path)!r} is not a funrec run directory (no summary.json), trajectory store "
        f"(no index.json) or video (a {'/'.join(VIDEO_SUFFIXES)} file or a folder with a "
        "funrec sidecar)"
    )


def describe_video(path: Path) -> dict[str, Any]:
    """Frames, size, fps, duration, layout and counts of a video and its sidecar.

    The sidecar of a completed video gives the frame count; a video without one
    (or whose writer was killed) is decoded to count the frames it holds.
    """
    side = sidecar_path(path)
    info = json.loads(side.read_text()) if side.is_file() else {}
    if info.get("complete"):
        frames, height, width = info["frames"], info["height"], info["width"]
    else:
        video = read_video(path)
        frames, height, width = video.shape[0], video.shape[2], video.shape[3]
    fps = info.get("fps")
    metadata = info.get("metadata", {})
    return {
        "kind": "video",
        "path": str(path),
        "format": info.get("format") or path.suffix.lstrip(".") or "png",
        "frames": frames,
        "width": width,
        "height": height,
        "fps": fps,
        "duration_s": frames / fps if fps else None,
        "layout": metadata.get("layout"),
        "counts": metadata.get("counts"),
        "complete": info.get("complete"),
        "bytes": disk_bytes(path),
    }


def describe_store(path: Path, *, episodes: bool = True) -> dict[str, Any]:
    """Steps, batch size, keys and (unless ``episodes=False``) episodes of a trajectory store.

    Episodes are found by folding ``funrec.episode_stats`` over the stored
    ``("next", "reward")`` and done key, so they are the episodes the rollout's
    own statistics would give.
    """
    index = json.loads((path / "index.json").read_text())
    td = load(path)
    desc: dict[str, Any] = {
        "kind": "trajectory",
        "path": str(path),
        "steps": td.batch_size[0],
        "batch_size": index["batch_size"],
        "keys": {
            "/".join(leaf["key"]): f"{leaf['dtype']} {leaf['shape']}" for leaf in index["leaves"]
        },
        "complete": index["complete"],
        "bytes": disk_bytes(path),
    }
    if episodes:
        reward, done = ("next", "reward"), tuple(index["done_key"] or ())
        found = done and reward in td.keys(True) and done in td.keys(True)
        steps = td.select(reward, done).unbind(0) if found else ()
        state = funrec.fold(funrec.episode_stats(reward, done), steps)
        desc["episodes"] = episode_summary(funrec.episodes(state)) if found else None
    return desc


def describe_run(path: Path) -> dict[str, Any]:
    """A run directory: its ``summary.json`` and a description of each file it lists."""
    summary = json.loads((path / "summary.json").read_text())
    files = summary["files"]
    desc = {"kind": "run", "path": str(path), **summary}
    desc["video"] = describe_video(path / files["video"])
    desc["env_videos"] = [describe_video(path / name) for name in files["env_videos"]]
    desc["trajectory"] = describe_store(path / files["trajectory"], episodes=False)
    if files["contact_sheet"] is not None:
        with Image.open(path / files["contact_sheet"]) as image:
            desc["contact_sheet"] = {"path": files["contact_sheet"], "size": list(image.size)}
    return desc


def episode_summary(episodes: Sequence[funrec.Episode]) -> dict[str, Any]:
    """Count, returns and lengths of finished episodes (None where there are none)."""
    returns = [e.total_reward for e in episodes]
    lengths = [e.length for e in episodes]
    return {
        "finished": len(episodes),
        "mean_return": statistics.fmean(returns) if returns else None,
        "min_return": min(returns, default=None),
        "max_return": max(returns, default=None),
        "sum_return": sum(returns),
        "mean_length": statistics.fmean(lengths) if lengths else None,
        "sum_length": sum(lengths),
    }


def render(desc: dict[str, Any]) -> str:
    """The lines a person reads for a description from :func:`describe`."""
    lines = {"video": _video, "trajectory": _store, "run": _run}[desc["kind"]](desc)
    return "\n".join(f"{label:<12}{text}" for label, text in lines)


def _video(desc: dict[str, Any], label: str = "video") -> list[tuple[str, str]]:
    name = Path(desc["path"]).name
    fps = f"{desc['fps']:g} fps, {desc['duration_s']:.1f} s" if desc["fps"] else "fps unknown"
    lines = [
        (
            label,
            f"{name}: {desc['frames']} frames, {desc['width']}x{desc['height']}, {fps}, "
            f"{desc['format']}, {human_size(desc['bytes'])}",
        )
    ]
    if desc["layout"]:
        layout = desc["layout"]
        shape = [*layout["batch_shape"], *_image_shape(layout)]
        lines.append(("", f"layout {layout['order']} {layout['dtype']} {shape}"))
    if desc["counts"]:
        lines.append(("", _counts(desc["counts"])))
    if desc["complete"] is False:
        lines.append(("", "incomplete: its writer did not finish; this is the playable prefix"))
    return lines


def _store(desc: dict[str, Any]) -> list[tuple[str, str]]:
    batch = tuple(desc["batch_size"] or ())
    text = f"{Path(desc['path']).name}: {desc['steps']} steps of batch size {batch}"
    text += f", {len(desc['keys'])} keys, {human_size(desc['bytes'])}"
    if not desc["complete"]:
        text += " (incomplete: the steps committed before a crash)"
    lines = [("trajectory", text)]
    lines += [("", f"{key}: {kind}") for key, kind in desc["keys"].items()]
    if "episodes" in desc:
        lines.append(("episodes", _episodes(desc["episodes"])))
    return lines


def _run(desc: dict[str, Any]) -> list[tuple[str, str]]:
    seed = "no seed" if desc["seed"] is None else f"seed {desc['seed']}"
    stopped = f" (interrupted, of {desc['requested_steps']})" if desc["interrupted"] else ""
    lines = [
        ("run", desc["path"]),
        (
            "env",
            f"{desc['env']} x{desc['num_envs']}, {desc['steps']} steps{stopped}, "
            f"{desc['policy']} policy, {seed}, {desc['wall_time_s']:.1f} s",
        ),
    ]
    lines += _video(desc["video"])
    for video in desc["env_videos"]:
        lines += _video(video, "env video")
    lines += _store(desc["trajectory"])
    lines.append(("episodes", f"{desc['files']['episodes']}: {_episodes(desc['episodes'])}"))
    if "contact_sheet" in desc:
        sheet = desc["contact_sheet"]
        lines.append(("sheet", f"{sheet['path']}: {sheet['size'][0]}x{sheet['size'][1]} png"))
    return lines


def _episodes(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return "no reward/done keys"
    if not summary["finished"]:
        return "no finished episode"
    return (
        f"{summary['finished']} finished, mean return {summary['mean_return']:.4g} "
        f"(min {summary['min_return']:g}, max {summary['max_return']:g}), "
        f"mean length {summary['mean_length']:.4g}"
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(
        f"{counts[name]} {name}" for name in ("seen", "recorded", "skipped", "dropped")
    )


def _image_shape(layout: dict[str, Any]) -> list[int]:
    h, w, c = layout["height"], layout["width"], layout["channels"]
    return {"HWC": [h, w, c], "CHW": [c, h, w], "HW": [h, w]}[layout["order"]]


def disk_bytes(path: Path) -> int:
    """The size of a file, or of every file under a directory, in bytes."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def human_size(n: float) -> str:
    """``1234567`` -> ``"1.2 MB"``."""
    units = ("B", "kB", "MB", "GB", "TB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n, i = n / 1000, i + 1
    return f"{n:.0f} B" if i == 0 else f"{n:.1f} {units[i]}"
