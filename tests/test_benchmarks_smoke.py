"""The benchmark runner runs: a tiny configuration in a subprocess, its table checked.

Nothing here times anything; the numbers of a quick run mean nothing.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

EXPECTED_ROWS = [
    "| 84x84x3 |",  # 1. per-step record cost
    "| 400x600x3 |",
    "| 16x84x84x3 |",
    "| unbounded |",  # 2. fold scaling
    "| drop_oldest, max_frames=1000 |",
    "| 20 |",  # 3. peak RSS (quick lengths 10, 20)
    "| veryfast |",  # 4. writer throughput
    "| ultrafast |",
    "| funrec VideoRecorder (mp4, streaming) |",  # 5. end to end
    "| TorchRL VideoRecorder (pt) |",
    "| funrec VideoRecorder (logger=None: held, no encoding) |",
    "| funrec_torchrl VideoRecorder.dump() (mp4, streamed) |",  # 6. dump latency
    "| TorchRL VideoRecorder.dump() (pt) |",
    "| gymnasium RecordVideo |",  # 7. gymnasium
    "| funrec stream |",
    "| 10 | ",  # 8. rollout memory (quick lengths 5, 10)
    "| scan + ring + streaming |",  # 9. recording inside jax.jit
]


def test_quick_run_writes_every_scenario_row(tmp_path):
    out = tmp_path / "benchmarks.md"
    subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--repeats", "1", "--out", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=420,  # about 3 min on a quiet 2-core machine
    )
    report = out.read_text()
    assert "## Machine" in report and "## Summary" in report
    missing = [row for row in EXPECTED_ROWS if row not in report]
    assert not missing, f"rows missing from the quick report: {missing}"
