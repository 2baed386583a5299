"""funrec.testing: the law checks catch broken recorders, and every built-in obeys them."""

import itertools
import os
import re
import subprocess
import sys
from typing import NamedTuple

import pytest
import torch
from conftest import pixel_steps
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from tensordict import TensorDict

import funrec
from funrec.testing import (
    LAWS,
    LawError,
    RecorderMachine,
    assert_accounting,
    assert_recovers,
    check_recorder,
)
from funrec.testing import strategies as fst
from funrec.testing._values import difference

# Modest runs for the kit's own tests; users run the checks under their profile.
QUICK = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[p for p in Phase if p != Phase.explain],
)
MACHINE = settings(QUICK, max_examples=8, stateful_step_count=20, report_multiple_bugs=False)


def reward_steps(rewards, dones=None):
    """One-step TensorDicts holding ("next", "reward") and ("next", "done"), unbatched."""
    dones = dones or [False] * len(rewards)
    return [
        TensorDict({"next": {"reward": torch.tensor([r]), "done": torch.tensor([d])}})
        for r, d in zip(rewards, dones, strict=True)
    ]


# Streams of rewards and done flags only: quick to draw and to shrink.
REWARDS = st.lists(st.tuples(st.floats(-10, 10, width=32), st.booleans()), max_size=8).map(
    lambda steps: reward_steps([r for r, _ in steps], [d for _, d in steps])
)


# --- Deliberately broken recorders -------------------------------------------------------------


class Total(NamedTuple):
    total: torch.Tensor


def mutating_sum() -> funrec.Recorder:
    """Sums rewards with an in-place += on the tensor of the state it was given."""

    def step(state: Total, td) -> Total:
        state.total.add_(td["next", "reward"].sum())
        return Total(state.total)

    return funrec.Recorder(lambda: Total(torch.zeros(())), step)


class Kept(NamedTuple):
    items: tuple = ()
    counts: funrec.Counts = funrec.Counts()


def miscounting_every_second() -> funrec.Recorder:
    """Keeps every second step's reward, but forgets to count the steps it skips."""

    def step(state: Kept, td) -> Kept:
        seen, recorded, skipped, dropped = state.counts
        if seen % 2:
            return state._replace(counts=funrec.Counts(seen + 1, recorded, skipped, dropped))
        kept = (*state.items, float(td["next", "reward"].sum()))
        return Kept(kept, funrec.Counts(seen + 1, recorded + 1, skipped, dropped))

    return funrec.Recorder(Kept, step)


class Clip(NamedTuple):
    frames: tuple = ()
    counts: funrec.Counts = funrec.Counts()


def keeping_frames() -> funrec.Recorder:
    """Keeps every frame, in a state whose drain is registered below."""

    def step(state: Clip, td) -> Clip:
        seen, recorded, skipped, dropped = state.counts
        frames = (*state.frames, td["pixels"].clone())
        return Clip(frames, funrec.Counts(seen + 1, recorded + 1, skipped, dropped))

    return funrec.Recorder(Clip, step)


@funrec.drain.register
def _(state: Clip, name=None):
    return state.frames[1:], state._replace(frames=())  # an off-by-one: the oldest frame is lost


_ids = itertools.count()


class Tagged(NamedTuple):
    episodes: tuple = ()


def globally_numbered_episodes() -> funrec.Recorder:
    """Numbers finished episodes from a counter that lives outside the state."""

    def step(state: Tagged, td) -> Tagged:
        if bool(td["next", "done"].any()):
            return Tagged((*state.episodes, next(_ids)))
        return state

    return funrec.Recorder(Tagged, step)


class WithHook(NamedTuple):
    steps: int
    to_reward: object


def unpicklable() -> funrec.Recorder:
    """Keeps a lambda in its state."""
    hook = lambda td: td["next", "reward"]  # noqa: E731
    return funrec.Recorder(
        lambda: WithHook(0, hook), lambda state, td: state._replace(steps=state.steps + 1)
    )


class Buffer(NamedTuple):
    rewards: list


def scratch_in_place() -> funrec.Recorder:
    """Pure when it succeeds; on a TensorDict without a reward, leaves a scratch slot behind."""

    def step(state: Buffer, td) -> Buffer:
        state.rewards.append(0.0)  # a scratch slot in the list it was given...
        reward = float(td["next", "reward"].sum())  # ...then a key that may be missing...
        state.rewards.pop()  # ...and the clean-up, on success only
        return Buffer([*state.rewards, reward])

    return funrec.Recorder(lambda: Buffer([]), step)


class Rewards(NamedTuple):
    items: tuple = ()  # each step's reward, oldest first
    counts: funrec.Counts = funrec.Counts()


def rewards() -> funrec.Recorder:
    def step(state: Rewards, td) -> Rewards:
        seen, recorded, skipped, dropped = state.counts
        items = (*state.items, float(td["next", "reward"].sum()))
        return Rewards(items, funrec.Counts(seen + 1, recorded + 1, skipped, dropped))

    return funrec.Recorder(Rewards, step)


@funrec.merge.register
def _(a: Rewards, b: Rewards) -> Rewards:
    counts = funrec.Counts(*(x + y for x, y in zip(a.counts, b.counts, strict=True)))
    return Rewards(b.items + a.items, counts)  # the second stream's rewards first: a bug


def caught(recorder, rollouts=None, **kwargs) -> str:
    with pytest.raises(LawError) as err:
        check_recorder(recorder, rollouts, settings=settings(QUICK, max_examples=50), **kwargs)
    return str(err.value)


def test_a_recorder_that_mutates_its_state_breaks_purity():
    message = caught(mutating_sum(), rollouts=REWARDS)
    assert message.startswith("The purity law is broken: step 0 changed the state it was given.")
    assert "state.total: 1 of 1 values differ" in message
    assert "On a stream of 1 TensorDict " in message  # shrunk to one step


def test_a_recorder_that_does_not_count_its_skips_breaks_accounting():
    message = caught(miscounting_every_second(), REWARDS, laws=["accounting"])
    assert message.startswith("The accounting law is broken: after step 1, counts is Counts(")
    assert "seen 2 != recorded 1 + skipped 0 + dropped 0" in message
    assert "a stream of 2 TensorDicts" in message


def test_a_recorder_whose_drain_loses_a_frame_breaks_accounting():
    message = caught(keeping_frames(), laws=["accounting"])
    assert message.startswith("The accounting law is broken: the drain ")
    out, recorded = re.search(r"handed out (\d+) items?, but (\d+) w", message).groups()
    assert int(out) == int(recorded) - 1  # the oldest frame went missing


def test_a_recorder_with_state_outside_its_state_breaks_determinism():
    message = caught(globally_numbered_episodes(), REWARDS)
    assert message.startswith(
        "The determinism law is broken: folding the same stream twice gave different states."
    )
    assert "state.episodes[0]: " in message
    assert "step 0: next.done: bool [1] [True]" in message


def test_an_unpicklable_state_breaks_pickling():
    message = caught(unpicklable(), rollouts=st.just(reward_steps([1.0])))
    assert message.startswith(
        "The pickling law is broken: the state after 0 steps cannot be pickled"
    )
    assert "state.to_reward (<function unpicklable.<locals>.<lambda>" in message
    assert "cannot be pickled" in message


def test_a_merge_that_puts_the_second_stream_first_breaks_merge():
    message = caught(rewards(), REWARDS, laws=["merge"])
    assert message.startswith(
        "The merge law is broken: merge(a, b) does not hold the items of a, then those of b."
    )
    assert re.search(r"\n  items\[\d+\]: ", message)
    assert re.search(r"\na: a stream of \d+ TensorDicts? .*\nb: a stream of ", message, re.DOTALL)


def test_a_step_that_fails_halfway_must_not_leave_its_state_changed():
    recorder = scratch_in_place()
    stream = reward_steps([1.0, 2.0])
    with pytest.raises(LawError) as err:
        assert_recovers(recorder, stream, TensorDict({}), at=1)
    assert str(err.value).startswith(
        "The purity law is broken: after 1 step, a step on a bad TensorDict raised "
        "KeyError and changed the state it was given."
    )
    assert "state.rewards: holds 1 item vs 2 items" in str(err.value)


def test_the_failing_stream_is_described_value_by_value():
    message = caught(mutating_sum(), rollouts=st.just(reward_steps([1.5, -2.0], [False, True])))
    assert "step 0: next.done: bool [1] [False], next.reward: float32 [1] [1.5]" in message
    assert "step 1: next.done: bool [1] [True], next.reward: float32 [1] [-2.0]" in message
    assert "state.total: 1 of 1 values differ, the first at index []: 0.0 vs 1.5" in message


def test_a_step_that_raises_on_good_input_is_reported_with_the_stream():
    message = caught(funrec.frames("rgb"), laws=["determinism"])
    assert message.startswith("Could not check the laws: step 0 raised MissingKeyError")
    assert "key 'rgb' is not in the TensorDict" in message


def test_accounting_hands_out_what_one_drain_at_the_end_does():
    steps = pixel_steps(5)
    assert_accounting(funrec.frames(), steps, drains={1, 3})
    rec = funrec.frames()

    def reversed_after_drain(state, td):  # hands items out in the wrong order after a drain
        new = rec.step(state, td)
        if len(new.items) == 2:
            return new._replace(items=type(new.items).of(reversed(tuple(new.items))))
        return new

    with pytest.raises(LawError, match=r"other items than one drain at the end") as err:
        assert_accounting(funrec.Recorder(rec.init, reversed_after_drain), steps, drains={2})
    assert "items[3]: 48 of 144 values differ, the first at index [0, 0, 0]: 3 vs 4" in str(
        err.value
    )


# --- Every built-in obeys the laws -------------------------------------------------------------

# torch 2.13 cannot unpickle uint16/32/64 tensors (pickle.loads fails in torch/serialization.py
# with "UntypedStorage has no attribute 'dtype'"); tensordicts() holds them as they come.
WIDE_UNSIGNED = ("uint16", "uint32", "uint64")
PICKLABLE = st.sampled_from([d for d in fst.DTYPES if d not in WIDE_UNSIGNED])
SMALL = fst.layouts(max_side=6)  # as check_recorder draws them by default
UNBATCHED = fst.rollouts(fst.layouts(batch_shape=(), max_side=6), max_steps=10)
BUILT_INS = {
    "frames": (funrec.frames(), None),
    "frames_skip": (funrec.frames(skip=3), None),
    "frames_drop_newest": (funrec.frames(max_frames=2), None),
    "frames_drop_oldest": (funrec.frames(skip=2, max_frames=2, overflow="drop_oldest"), None),
    "frames_error": (
        funrec.frames(max_frames=4, overflow="error"),
        fst.rollouts(SMALL, max_steps=4),
    ),
    "tensordicts": (
        funrec.tensordicts(max_steps=3, overflow="drop_oldest"),
        fst.rollouts(fst.layouts(dtype=PICKLABLE, max_side=6), max_steps=10),
    ),
    "episode_stats": (funrec.episode_stats(), None),
    "every": (funrec.every(2, funrec.frames()), None),
    "when": (funrec.when(lambda td: bool(td["next", "reward"].sum() > 0), funrec.frames()), None),
    "on_episodes": (funrec.on_episodes(lambda ep: ep % 2 == 0, funrec.frames()), UNBATCHED),
    "on_steps": (funrec.on_steps(lambda t: t % 4 == 1, funrec.frames(), length=2), None),
    "select": (funrec.select([("next", "reward")], funrec.tensordicts()), None),
    "map_td": (funrec.map_td(lambda td: td.exclude("next"), funrec.frames()), None),
    "named": (
        funrec.named(video=funrec.frames(skip=2), stats=funrec.episode_stats()),
        None,
    ),
    "pipeline": (
        funrec.pipeline(funrec.select(["pixels"]), funrec.every(3), funrec.frames(max_frames=2)),
        None,
    ),
}


@pytest.mark.parametrize("name", BUILT_INS)
def test_built_in_recorders_obey_the_laws(name):
    recorder, rollouts = BUILT_INS[name]
    checked = check_recorder(recorder, rollouts, settings=QUICK)
    assert checked == LAWS


def test_tensordicts_obeys_the_laws_on_wide_unsigned_pixels():
    wide = fst.rollouts(fst.layouts(dtype=st.sampled_from(WIDE_UNSIGNED), max_side=6), max_steps=6)
    laws = [law for law in LAWS if law != "pickling"]  # torch's bug, see WIDE_UNSIGNED
    rec = funrec.tensordicts(max_steps=3, overflow="drop_oldest")
    assert check_recorder(rec, wide, laws=laws, settings=QUICK) == tuple(laws)


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32, torch.uint64])
def test_tensordicts_takes_wide_unsigned_pixels(dtype):
    # The kit found it: TensorDict.clone cannot copy these dtypes (it adds 0).
    pixels = torch.arange(12).reshape(2, 2, 3).to(dtype)
    td = TensorDict({"pixels": pixels, "next": {"reward": torch.ones(1)}})
    rec = funrec.tensordicts()
    state = rec.step(rec.init(), td)
    pixels.zero_()  # an env reusing its buffer does not change what was recorded
    (held,) = funrec.drain(state)[0]
    assert held["pixels"].dtype == dtype
    assert held["pixels"].to(torch.int64).flatten().tolist() == list(range(12))
    assert held["next", "reward"].tolist() == [1.0]


class FramesMachine(RecorderMachine):
    recorder = funrec.frames(skip=2, max_frames=3, overflow="drop_oldest")


class NamedMachine(RecorderMachine):
    recorder = funrec.named(video=funrec.every(2, funrec.frames()), stats=funrec.episode_stats())


TestFramesMachine = FramesMachine.TestCase
TestFramesMachine.settings = MACHINE
TestNamedMachine = NamedMachine.TestCase
TestNamedMachine.settings = MACHINE


def test_the_machine_finds_a_frame_lost_after_a_drain():
    class Lossy(RecorderMachine):
        recorder = keeping_frames()

    Lossy.TestCase.settings = settings(MACHINE, max_examples=100)
    with pytest.raises(LawError) as err:
        Lossy.TestCase().runTest()
    message = str(err.value)
    assert message.startswith("The accounting law is broken: the drain at event ")
    assert "handed out 0 items, but 1 was recorded since the last drain" in message
    assert "After the events: " in message and ", drain" in message


def test_the_machine_finds_an_unpicklable_state():
    class Unpicklable(RecorderMachine):
        recorder = unpicklable()

    Unpicklable.TestCase.settings = MACHINE
    with pytest.raises(LawError, match=r"The pickling law is broken: the state at event \d+"):
        Unpicklable.TestCase().runTest()


def test_the_machine_checks_that_a_rejected_reset_leaves_the_state_valid():
    class Resets(RecorderMachine):  # a reset TensorDict has no ("next", "reward")
        recorder = scratch_in_place()

    Resets.TestCase.settings = settings(MACHINE, max_examples=50)
    with pytest.raises(LawError) as err:
        Resets.TestCase().runTest()
    message = str(err.value)
    assert "a step on a reset TensorDict raised KeyError and changed the state it was given" in (
        message
    )


def test_a_machine_without_a_recorder_says_what_to_set():
    with pytest.raises(funrec.RecorderError, match=r"RecorderMachine.recorder is None; set it"):
        RecorderMachine()


# --- States as values --------------------------------------------------------------------------


def test_difference_names_the_first_part_that_differs():
    a = funrec.fold(
        funrec.frames(), [TensorDict({"pixels": torch.zeros(2, 2, 3, dtype=torch.uint8)})]
    )
    b = a._replace(counts=a.counts._replace(skipped=4))
    assert difference(a, a) is None
    assert difference(a, b) == "state.counts.skipped: 0 vs 4"
    assert (
        difference(
            {"x": torch.tensor([float("nan"), 1.0])}, {"x": torch.tensor([float("nan"), 1.0])}
        )
        is None
    )
    assert difference((1,), [1]) == "state: (1,) vs [1] (a tuple and a list)"


# --- Packaging ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "args", "profile"),
    [({"CI": "1"}, [], "ci"), ({"CI": "1"}, ["--hypothesis-profile=dev"], "dev")],
)
def test_the_plugin_loads_the_projects_profiles(tmp_path, env, args, profile):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["funrec.testing.pytest_plugin"]\n')
    (tmp_path / "test_profile.py").write_text(
        "from hypothesis import settings\n"
        "def test_profile():\n"
        "    print('PROFILE', settings.get_current_profile_name(), settings.default.max_examples)\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "HYPOTHESIS_PROFILE")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", *args],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    examples = {"ci": 200, "dev": 50}[profile]
    assert f"PROFILE {profile} {examples}" in done.stdout
