"""Entry point of a memory probe: ``python -m benchmarks.child module:function JSON_KWARGS``.

Runs the function in this fresh interpreter, then prints one JSON line with its
result and two peaks:

* ``peak_rss_mib``: this interpreter's high-water mark, ``VmHWM`` from
  ``/proc/self/status``. (Not ``getrusage``'s ``ru_maxrss``: Linux carries it
  across ``exec``, so a child started by a large parent reports the parent's size.)
* ``children_peak_rss_mib``: the largest total resident set of its ffmpeg
  child processes, sampled every 20 ms while the function runs.
"""

import contextlib
import importlib
import json
import sys
import threading

import psutil


def high_water_mib() -> float:
    """This process's peak resident set so far, in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main(target: str, kwargs: str) -> None:
    """Runs ``target(**json.loads(kwargs))`` and prints its result and peak memory."""
    me, peak, done = psutil.Process(), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            total = 0
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):  # it exited meanwhile
                    # Only ffmpeg: a child caught between fork and exec still
                    # counts its parent's pages as its own.
                    if "ffmpeg" in child.name():
                        total += child.memory_info().rss
            peak[0] = max(peak[0], total)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    module, function = target.split(":")
    result = getattr(importlib.import_module(module), function)(**json.loads(kwargs))
    done.set()
    sampler.join()
    report = {
        "result": result,
        "peak_rss_mib": high_water_mib(),
        "children_peak_rss_mib": peak[0] / 2**20,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:])
