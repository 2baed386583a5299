"""Property-test your own recording pipeline with funrec.testing.strategies.

    python examples/property_test_pipeline.py      # exits 1 if a property fails

The pipeline under test, ``my_recorder()``, records every second frame of a rollout
and the return of every episode. Instead of a handful of hand-written rollouts,
Hypothesis draws hundreds: any frame layout (HWC, CHW, grayscale, RGBA, uint8,
float [0, 1] or [0, 255], bool, ...), no batch or one or two batch dims, episodes
that end at different steps in different sub-envs. When a property fails,
Hypothesis shrinks the rollout to a minimal one and prints it.

Swap in your own recorder and your own properties; keep the oracle simple and
independent of the code under test (here: slicing the list of steps, and summing
rewards in plain Python).
"""

import sys
import traceback

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import funrec
from funrec.layout import detect, normalize
from funrec.testing import strategies as fst


def my_recorder() -> funrec.Recorder:
    """The pipeline under test: every second frame, and episode statistics."""
    return funrec.named(
        video=funrec.pipeline(funrec.every(2), funrec.frames("pixels")),
        stats=funrec.episode_stats(),
    )


@settings(max_examples=100, deadline=None)
@given(steps=fst.rollouts(max_steps=12))
def every_second_frame_is_recorded_exactly(steps):
    state = funrec.fold(my_recorder(), steps)
    layout = detect(steps[0]["pixels"])
    expected = torch.stack([normalize(td["pixels"], layout) for td in steps[::2]])
    assert torch.equal(funrec.video(state["video"]), expected)
    counts = funrec.counts(state)["video"]
    assert counts.seen == len(steps) == counts.recorded + counts.skipped + counts.dropped


@settings(max_examples=100, deadline=None)
@given(steps=fst.rollouts(max_steps=12))
def episode_returns_add_up_the_rewards(steps):
    state = funrec.fold(my_recorder(), steps)
    expected = []
    n_envs = steps[0].batch_size.numel()
    running = [[] for _ in range(n_envs)]
    for td in steps:
        rewards = td["next", "reward"].reshape(-1).tolist()
        dones = td["next", "done"].reshape(-1).tolist()
        for env in range(n_envs):
            running[env].append(rewards[env])
            if dones[env]:
                expected.append((env, sum(running[env]), len(running[env])))
                running[env] = []
    got = [(e.env, e.total_reward, e.length) for e in funrec.episodes(state["stats"])]
    assert [(env, length) for env, _, length in got] == [(env, n) for env, _, n in expected]
    for (_, total, _), (_, want, _) in zip(got, expected, strict=True):
        assert abs(total - want) <= 1e-4 * max(1.0, abs(want))


@settings(max_examples=100, deadline=None)
@given(steps=fst.rollouts(max_steps=12), data=st.data())
def draining_as_we_go_loses_no_frame(steps, data):
    """Streaming to a writer (drain at any points) gives the same frames as one long fold."""
    rec = my_recorder()
    whole = funrec.video(funrec.fold(rec, steps)["video"])
    state, drained = rec.init(), []
    for td in steps:
        state = rec.step(state, td)
        if data.draw(st.booleans(), label="drain now"):
            items, state = funrec.drain(state)
            drained += items["video"]
    items, state = funrec.drain(state)
    drained += items["video"]
    assert torch.equal(torch.stack(drained), whole)


PROPERTIES = [
    every_second_frame_is_recorded_exactly,
    episode_returns_add_up_the_rewards,
    draining_as_we_go_loses_no_frame,
]


def main() -> int:
    """Runs every property; returns the process exit code (0: all hold)."""
    failed = 0
    for prop in PROPERTIES:
        try:
            prop()
        except Exception:
            failed += 1
            traceback.print_exc()
            print(f"FAIL {prop.__name__}")
        else:
            print(f"ok   {prop.__name__}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
