"""Runs TorchRL's own recorder tests against funrec_torchrl, from a pytorch/rl checkout.

Usage::

    python -m benchmarks.torchrl_tests /path/to/pytorch-rl [--torchrl] [-- PYTEST_ARGS...]

The checkout's ``test/`` folder is copied to a temporary folder; in the test
files named below, every ``from torchrl.record[.recorder] import`` line that
imports only recorder transforms is rewritten to ``from funrec_torchrl import``
(nothing else changes), then pytest runs the recorder tests there with this
Python. ``--torchrl`` runs the same tests unchanged, against TorchRL. Nothing is
fetched; the checkout is only read. Prints pytest's summary and exits with its code.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TESTS = (
    "test/transforms/test_timer_video.py::TestVideoRecorder",
    "test/test_loggers.py::TestPixelRenderTransform::test_pixel_render",
    "test/test_loggers.py::test_video_recorder_uses_service_client_and_default_vector_grid",
    "test/collectors/test_evaluator.py::TestEvaluatorSync::test_video_recorder_dump",
    "test/collectors/test_evaluator.py::TestEvaluatorProcess::test_video_recorder_dumps_to_process_logger",
)
RECORDERS = {"VideoRecorder", "PixelRenderTransform", "TensorDictRecorder"}
IMPORT = re.compile(r"^from torchrl\.record(?:\.recorder)? import (.+)$", re.MULTILINE)


def swap_imports(source: str) -> tuple[str, int]:
    """``source`` with its recorder imports taken from funrec_torchrl, and how many changed."""

    def swap(match: re.Match) -> str:
        names = {name.strip() for name in match.group(1).split(",")}
        return f"from funrec_torchrl import {match.group(1)}" if names <= RECORDERS else match[0]

    swapped = IMPORT.sub(swap, source)
    changed = sum(a != b for a, b in zip(source.splitlines(), swapped.splitlines(), strict=True))
    return swapped, changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="a pytorch/rl checkout (holds test/)")
    parser.add_argument("--torchrl", action="store_true", help="run the tests unchanged")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="torchrl-tests-") as tmp:
        root = Path(tmp)
        shutil.copytree(args.checkout / "test", root / "test")
        if not args.torchrl:
            for path in sorted({t.split("::")[0] for t in TESTS}):
                source, changed = swap_imports((root / path).read_text())
                if not changed:
                    print(f"no recorder import to swap in {path}", file=sys.stderr)
                    return 2
                (root / path).write_text(source)
                print(f"{path}: {changed} import line(s) now read funrec_torchrl")
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs"]
        return subprocess.call([*command, *TESTS, *args.pytest_args], cwd=root)


if __name__ == "__main__":
    sys.exit(main())
