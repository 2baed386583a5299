"""funrec.testing.strategies: what the strategies promise, and the example that uses them."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import torch
from hypothesis import find, given
from hypothesis import strategies as st

import funrec
from funrec.layout import CHANNELS, detect
from funrec.testing import strategies as fst

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "property_test_pipeline.py"


@given(layout=fst.layouts(detectable=False), data=st.data())
def test_images_for_fit_their_layout_and_detect_gives_it_back(layout, data):
    image = data.draw(fst.images_for(layout))
    assert tuple(image.shape) == layout.shape
    assert str(image.dtype) == f"torch.{layout.dtype}"
    if layout.order == "HW":
        needs_hint = layout.batch_shape != ()
    else:
        needs_hint = layout.shape[-1] in CHANNELS and layout.shape[-3] in CHANNELS
    hint = layout.order if needs_hint else None
    assert detect(image, hint=hint) == layout


@given(layout=fst.layouts())
def test_detectable_layouts_need_no_hint(layout):
    assert detect(torch.zeros(layout.shape, dtype=getattr(torch, layout.dtype))).order == (
        layout.order
    )


@given(
    image=fst.images(order="CHW", channels=4, dtype="float32", batch_shape=(2, 3), max_side=5)
)
def test_images_keep_the_fixed_parameters(image):
    layout = detect(image)
    assert (layout.order, layout.channels, layout.dtype, layout.batch_shape) == (
        "CHW",
        4,
        "float32",
        (2, 3),
    )
    assert max(layout.height, layout.width) <= 5


@given(steps=fst.rollouts(max_steps=8))
def test_rollouts_are_well_formed_streams(steps):
    assert 1 <= len(steps) <= 8
    layout = detect(steps[0]["pixels"])
    for td in steps:
        batch = tuple(td.batch_size)
        assert batch == layout.batch_shape
        assert td["next", "reward"].shape == (*batch, 1)
        assert td["next", "reward"].dtype == torch.float32
        assert td["next", "done"].shape == (*batch, 1)
        assert td["next", "done"].dtype == torch.bool
    state = funrec.fold(funrec.frames(), steps)  # one layout for the whole stream
    assert funrec.counts(state).recorded == len(steps)


def test_rollouts_end_episodes_at_different_steps_per_env():
    def ends_apart(steps):
        dones = torch.stack([td["next", "done"].reshape(-1) for td in steps])
        return bool((dones[:, 0] != dones[:, 1]).any())

    steps = find(fst.rollouts(batch_size=(2,), max_steps=4), ends_apart)
    assert ends_apart(steps)


def test_the_example_passes_on_its_pipeline():
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ok ") == 3


def test_the_example_fails_on_a_broken_pipeline(capsys):
    spec = importlib.util.spec_from_file_location("property_test_pipeline", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    # A bug: every third frame instead of every second.
    example.my_recorder = lambda: funrec.named(
        video=funrec.pipeline(funrec.every(3), funrec.frames()), stats=funrec.episode_stats()
    )
    assert example.main() == 1
    assert "FAIL every_second_frame_is_recorded_exactly" in capsys.readouterr().out
