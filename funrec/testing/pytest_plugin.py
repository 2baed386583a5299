"""funrec's Hypothesis profiles, ``ci`` and ``dev``, as a pytest plugin.

Enable it in a ``conftest.py`` at the root of your tests::

    pytest_plugins = ["funrec.testing.pytest_plugin"]

``ci`` runs 200 examples per property, derandomized so that a failure
reproduces, and prints the reproduction blob; ``dev`` runs 50, randomly. Neither
has a deadline (a first step may decide a layout). The plugin loads
``$HYPOTHESIS_PROFILE`` if set, else ``ci`` when ``$CI`` is set, else ``dev``;
pytest's ``--hypothesis-profile`` option wins over both.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", max_examples=200, derandomize=True, print_blob=True, deadline=None)
settings.register_profile("dev", max_examples=50, print_blob=True, deadline=None)


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("hypothesis_profile", None) is None:
        default = "ci" if os.environ.get("CI") else "dev"
        settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", default))
