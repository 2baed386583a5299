"""Entry point of a memory probe: ``python -m benchmarks.child module:function JSON_KWARGS``.

Runs the function in this fresh interpreter, then prints one JSON line with its
result and the peak resident sets that ``getrusage`` saw (Linux: KiB -> MiB).
"""

import importlib
import json
import resource
import sys


def main(target: str, kwargs: str) -> None:
    """Runs ``target(**json.loads(kwargs))`` and prints its result and peak memory."""
    module, function = target.split(":")
    result = getattr(importlib.import_module(module), function)(**json.loads(kwargs))
    report = {
        "result": result,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "children_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:])
