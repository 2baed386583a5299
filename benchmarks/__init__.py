"""funrec's benchmarks: recording cost against TorchRL, gymnasium and this machine's limits.

Run ``python -m benchmarks`` (``make bench``); it writes ``docs/benchmarks.md``.
Each scenario module has ``run(cfg) -> Section``; ``benchmarks.harness`` holds the
timing, the statistics and the Markdown. Nothing here is a test: no timing is
asserted anywhere, the table says which target is met.
"""
