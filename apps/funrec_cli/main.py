"""The ``funrec`` command line: ``funrec record`` and ``funrec inspect``.

Exit codes: 0 when the command did its job; 2 for bad arguments (argparse's
message names the argument); 1 for a failure at run time, reported in one line
(``--debug`` shows the traceback instead); 130 when Ctrl-C stopped a recording
(what was recorded until then is kept); 141 when the reader of stdout went away.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

from funrec_cli.errors import CliError

FORMATS = ("mp4", "gif", "pt", "memmap")


class Policy(NamedTuple):
    """A policy named on the command line as ``module:callable``."""

    spec: str
    fn: Callable[[Any], Any]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``funrec`` with ``argv`` (``sys.argv[1:]`` by default).

    Returns:
        The exit code.

    Example:
        >>> main(["inspect", "runs/CartPole-v1-20260101-120000"])  # doctest: +SKIP
        0
    """
    # Rendering needs no display, and pygame should not greet on stdout.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    args = parser().parse_args(argv)  # exits with code 2 on a bad argument
    if not args.debug:
        warnings.simplefilter("ignore")  # library warnings are for --debug
    try:
        return _record(args) if args.command == "record" else _inspect(args)
    except KeyboardInterrupt:
        print(f"funrec {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `funrec inspect RUN | head -3`: the reader left, like cat
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141
    except Exception as err:
        if args.debug:
            raise
        from funrec.writers import WriterError

        message = " ".join(str(err).split())
        if not isinstance(err, CliError | WriterError):
            message = f"{type(err).__name__}: {message}"
        print(f"funrec {args.command}: error: {message}", file=sys.stderr)
        return 1


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``funrec`` and its two commands."""
    top = argparse.ArgumentParser(
        prog="funrec", description="Record RL rollouts and inspect recordings."
    )
    top.add_argument("--version", action="version", version=f"funrec {metadata.version('funrec')}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", help="on a failure, show the traceback instead of one line"
    )

    record = commands.add_parser(
        "record",
        parents=[common],
        help="record a rollout into a run directory",
        description="Record a rollout of a gymnasium env into a run directory: the video, the "
        "trajectory store, episode statistics (episodes.csv, summary.json) and contact_sheet.png.",
    )
    record.add_argument(
        "--env",
        default="CartPole-v1",
        metavar="ID",
        help="a gymnasium env id that renders rgb_array images (ALE ids with ale-py); "
        "default: %(default)s",
    )
    record.add_argument(
        "--steps", type=_positive(int), default=500, help="env steps; default: %(default)s"
    )
    record.add_argument(
        "--num-envs",
        type=_positive(int),
        default=1,
        metavar="N",
        help="N copies of the env in a batch: a grid video and one video per env; default: 1",
    )
    record.add_argument(
        "--fps",
        type=_positive(float),
        help="video frame rate; default: the env's render_fps divided by --skip (else 30)",
    )
    record.add_argument(
        "--skip", type=_positive(int), default=1, help="keep one frame in SKIP; default: 1"
    )
    record.add_argument(
        "--max-frames",
        type=_positive(int),
        metavar="N",
        help="keep the first N frames of each video (later ones are counted as dropped); "
        "they are held in memory and written at the end",
    )
    record.add_argument(
        "--format", choices=FORMATS, default="mp4", help="video format; default: %(default)s"
    )
    record.add_argument(
        "--policy",
        type=_policy,
        metavar="MODULE:CALLABLE",
        help="a TorchRL-style policy, td -> td with an action; default: random actions",
    )
    record.add_argument("--seed", type=int, help="seed of the env and of the random actions")
    record.add_argument(
        "--out",
        type=_new_directory,
        metavar="DIR",
        help="the run directory, new or empty; default: runs/<env>-<date>-<time>",
    )
    record.add_argument(
        "--quiet", action="store_true", help="no progress bar, no summary: print the run directory"
    )

    inspect = commands.add_parser(
        "inspect",
        parents=[common],
        help="describe a video, a trajectory store or a run directory",
        description="Describe what a recording holds: frames, size, fps, duration, layout, "
        "episodes and returns, recorded/skipped/dropped counts.",
    )
    inspect.add_argument("path", type=Path, metavar="PATH")
    inspect.add_argument("--json", action="store_true", help="print JSON, for scripts")
    return top


def _record(args: argparse.Namespace) -> int:
    from funrec_cli.inspection import describe, render
    from funrec_cli.record import record

    run, interrupted = record(args)
    print(run if args.quiet else render(describe(run)))
    if interrupted:
        print(
            f"funrec record: interrupted; {str(run)!r} holds what was recorded before Ctrl-C",
            file=sys.stderr,
        )
        return 130
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from funrec_cli.inspection import describe, render

    desc = describe(args.path)
    print(json.dumps(desc, indent=1) if args.json else render(desc))
    return 0


def _positive(kind: type) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return convert


def _new_directory(text: str) -> Path:
    path = Path(text)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise argparse.ArgumentTypeError(
            f"{text!r} exists and is not an empty directory; a run never writes over another: "
            "choose a new path"
        )
    return path


def _policy(spec: str) -> Policy:
    """Imports ``module:callable`` (the current directory is searched first)."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise argparse.ArgumentTypeError(
            f"expected MODULE:CALLABLE, e.g. my_policies:greedy, got {spec!r}"
        )
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise argparse.ArgumentTypeError(
            f"cannot import {module_name!r}: {type(err).__name__}: {err}"
        ) from err
    finally:
        sys.path.pop(0)
    if not hasattr(module, name):
        raise argparse.ArgumentTypeError(f"module {module_name!r} has no attribute {name!r}")
    fn = getattr(module, name)
    if not callable(fn):
        raise argparse.ArgumentTypeError(f"{spec!r} is a {type(fn).__name__}, not a callable")
    return Policy(spec, fn)
