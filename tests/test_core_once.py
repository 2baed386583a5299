"""Issue 9: every rule in the core once, views for any state, typed combinators, fixed structure."""

import ast
import inspect
import pickle
import subprocess
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from conftest import frame_index, pixel_steps, stamped_frame
from hypothesis import given
from hypothesis import strategies as st
from tensordict import TensorDict

import funrec
from funrec import Counts, LayoutError, RecorderError, rules

CORE = Path(funrec.__file__).parent
SHELL_ONLY = ("writers", "testing", "subprocess", "imageio_ffmpeg", "torchrl", "hypothesis")


# -- views for every state -------------------------------------------------------


def test_counts_and_drain_look_through_a_gate_in_front_of_named():
    rec = funrec.every(2, funrec.named(a=funrec.frames(), b=funrec.tensordicts()))
    assert funrec.counts(rec.init()) == {"a": Counts(), "b": Counts()}
    state = funrec.fold(rec, pixel_steps(5))
    assert funrec.counts(state) == {
        "a": Counts(seen=5, recorded=3, skipped=2, dropped=0),
        "b": Counts(seen=5, recorded=3, skipped=2, dropped=0),
    }
    items, emptied = funrec.drain(state, name="a")
    assert [frame_index(f) for f in items] == [0, 2, 4]
    assert len(funrec.drain(emptied)[0]["b"]) == 3  # the other name keeps its items
    assert funrec.drain(emptied)[0]["a"] == ()


class Tally(NamedTuple):
    """A user state that follows the convention: `items` and `counts` fields."""

    items: funrec.Queue = funrec.Queue()
    counts: Counts = Counts()


def rewards_above(threshold: float) -> funrec.Recorder:
    def step(state: Tally, td: TensorDict) -> Tally:
        reward = float(td["reward"])
        c = state.counts
        if reward <= threshold:
            return Tally(state.items, c._replace(seen=c.seen + 1, skipped=c.skipped + 1))
        return Tally(
            state.items.append(reward), c._replace(seen=c.seen + 1, recorded=c.recorded + 1)
        )

    return funrec.Recorder(Tally, step)


def reward_steps(values):
    return [TensorDict({"reward": torch.tensor(float(v))}) for v in values]


def test_a_user_recorder_is_viewable_under_gates_and_named():
    rec = funrec.named(big=funrec.every(2, rewards_above(1.0)), all=rewards_above(-1.0))
    state = funrec.fold(rec, reward_steps([0, 5, 3, 7, 9, 0]))
    assert funrec.counts(state)["big"] == Counts(seen=6, recorded=2, skipped=4, dropped=0)
    items, _ = funrec.drain(state, name="big")
    assert items == (3.0, 9.0)
    assert funrec.drain(state)[0]["all"] == (0.0, 5.0, 3.0, 7.0, 9.0, 0.0)


def test_an_unknown_state_gets_a_clear_error_and_can_be_registered():
    class Opaque(NamedTuple):  # a fresh type per run: registrations cannot be undone
        total: float = 0.0

    summing = funrec.Recorder(Opaque, lambda s, td: Opaque(s.total + float(td["reward"])))
    state = funrec.fold(funrec.every(2, summing), reward_steps([1, 2, 3]))
    with pytest.raises(RecorderError, match=r"counts\(\): Opaque is not a state.*register"):
        funrec.counts(state)
    with pytest.raises(RecorderError, match=r"drain\(\): Opaque"):
        funrec.drain(state)

    @funrec.counts.register
    def _(s: Opaque) -> Counts:
        return Counts(seen=1, recorded=1)

    assert funrec.counts(state) == Counts(seen=2, recorded=1, skipped=1)


def test_views_name_the_right_view_for_the_items_held():
    state = funrec.fold(funrec.tensordicts(), pixel_steps(2))
    with pytest.raises(RecorderError, match=r"holds TensorDict items.*trajectory"):
        funrec.video(state)
    with pytest.raises(
        RecorderError, match=r"pick one recorder's state, e.g. video\(state\['v'\]\)"
    ):
        funrec.video(funrec.named(v=funrec.frames()).init())
    with pytest.raises(RecorderError, match="not a named"):
        funrec.drain(state, name="v")


# -- named state is an immutable mapping ------------------------------------------


def test_named_state_is_a_mapping():
    state = funrec.named(video=funrec.frames(), stats=funrec.episode_stats()).init()
    assert list(state) == ["video", "stats"] and len(state) == 2
    assert "video" in state and "nope" not in state
    assert dict(state.items()).keys() == {"video", "stats"}
    with pytest.raises(KeyError, match=r"'nope'.*\['video', 'stats'\]"):
        state["nope"]
    with pytest.raises(KeyError, match="no recorder named 0"):
        state[0]
    with pytest.raises(TypeError):
        state["video"] = None  # immutable
    assert pickle.loads(pickle.dumps(state)) == state
    assert state.replace(video=funrec.frames().init()) == state


# -- typed combinators ------------------------------------------------------------


def test_stages_have_signatures_and_readable_reprs():
    assert list(inspect.signature(funrec.every).parameters) == ["n", "recorder"]
    assert repr(funrec.every(2)) == "every(2)"
    assert repr(funrec.select(["pixels"])) == "select(['pixels'])"
    assert isinstance(funrec.every(2), funrec.Stage)
    assert isinstance(funrec.every(2, funrec.frames()), funrec.Recorder)
    assert isinstance(funrec.every(2, recorder=funrec.frames()), funrec.Recorder)


def test_a_plain_tuple_is_not_taken_for_a_recorder():
    rec = funrec.frames()
    with pytest.raises(RecorderError, match=r"every\(2\): expected a funrec.Recorder, got tuple"):
        funrec.every(2, (rec.init, rec.step))
    with pytest.raises(RecorderError, match=r"named\(video=...\).*got str"):
        funrec.named(video="pixels")


def test_pipeline_says_which_argument_is_wrong():
    with pytest.raises(RecorderError, match=r"argument 1 is a recorder.*named"):
        funrec.pipeline(funrec.frames(), funrec.frames())
    with pytest.raises(RecorderError, match=r"argument 2 \(3\) is not a stage"):
        funrec.pipeline(funrec.every(2), 3, funrec.frames())
    with pytest.raises(RecorderError, match="must end with a recorder"):
        funrec.pipeline(funrec.every(2))


# -- one mechanism per rule ---------------------------------------------------------


@given(n=st.integers(0, 30), skip=st.integers(1, 5), cap=st.none() | st.integers(1, 6))
def test_skip_is_the_every_gate(n, skip, cap):
    steps = pixel_steps(n)
    by_skip = funrec.fold(funrec.frames(skip=skip, max_frames=cap), steps)
    by_gate = funrec.fold(funrec.every(skip, funrec.frames(max_frames=cap)), steps)
    if skip == 1:
        by_gate = by_gate.inner
    assert by_skip == by_gate


@given(
    ends=st.lists(st.booleans(), max_size=30),
    cap=st.none() | st.integers(1, 4),
    overflow=st.sampled_from(rules.OVERFLOW_POLICIES[:2]),
)
def test_episode_stats_counts_and_drains_episodes(ends, cap, overflow):
    steps = [
        TensorDict({"next": {"reward": torch.ones(1), "done": torch.tensor([d])}}) for d in ends
    ]
    state = funrec.fold(funrec.episode_stats(max_episodes=cap, overflow=overflow), steps)
    finished = sum(ends)
    c = funrec.counts(state)
    assert c.seen == finished and c.seen == c.recorded + c.skipped + c.dropped
    items, _ = funrec.drain(state)
    assert len(items) == c.recorded == (finished if cap is None else min(finished, cap))


def test_done_flags_reads_every_done_key_nested_and_per_sub_env():
    td = TensorDict(
        {
            "next": {
                "done": torch.tensor([[False], [False], [False]]),
                "agents": {
                    "done": torch.tensor([[[True], [False]], [[False], [False]], [[False], [True]]])
                },
                "done_not": torch.ones(3, 1, dtype=torch.bool),  # ends with "done" only as text
            }
        },
        batch_size=[3],
    )
    assert rules.done_flags(td).tolist() == [True, False, True]
    assert rules.done_flags(td, ("next", "done")).tolist() == [False, False, False]
    root = TensorDict({"done": torch.tensor([True])})  # an env step: done at the root
    assert bool(rules.done_flags(root))
    with pytest.raises(funrec.MissingKeyError, match="'done'"):
        rules.done_flags(TensorDict({"reward": torch.ones(1)}))


def test_episode_stats_ends_episodes_on_nested_done_keys():
    steps = [
        TensorDict(
            {"next": {"reward": torch.ones(1), "agents": {"done": torch.tensor([[t == 2]])}}}
        )
        for t in range(5)
    ]
    assert funrec.episodes(funrec.fold(funrec.episode_stats(), steps)) == (
        funrec.Episode(0, 3.0, 3),
    )


@pytest.mark.parametrize("backend", ["python", "torch", "jax"])
def test_the_rules_are_the_same_arithmetic_on_every_backend(backend):
    if backend == "jax":
        jnp = pytest.importorskip("jax.numpy")
        to = jnp.asarray
    else:
        to = torch.tensor if backend == "torch" else (lambda v: v)
    for held in range(4):
        for overflow in rules.OVERFLOW_POLICIES:
            got = rules.admit(to(held), 2, overflow)
            want = rules.admit(held, 2, overflow)
            assert tuple(bool(x) for x in got) == want
            counted = rules.count(Counts(*(to(0),) * 4), got)
            assert tuple(int(x) for x in counted) == tuple(rules.count(Counts(), want))
    for remaining in range(3):
        for fired in (False, True):
            got = rules.window(to(remaining), to(fired), 3)
            assert (bool(got[0]), int(got[1])) == rules.window(remaining, fired, 3)
    assert [bool(rules.periodic(to(i), 3)) for i in range(4)] == [True, False, False, True]
    got = rules.episode_step(to(2.0), to(2), to(1.0), to(True))
    assert [float(x) for x in got] == [3.0, 3.0, 0.0, 0.0]


# -- crops before frames are held ----------------------------------------------------


def test_crop_happens_before_the_frame_is_held():
    frame = torch.arange(20 * 30 * 3, dtype=torch.int64).remainder(256).to(torch.uint8)
    frame = frame.reshape(20, 30, 3)
    state = funrec.fold(funrec.frames(crop=(4, 6)), [TensorDict({"pixels": frame})])
    held = funrec.drain(state)[0][0]
    assert held.shape == (3, 4, 6)
    assert torch.equal(held, frame.permute(2, 0, 1)[:, 8:12, 12:18])
    assert held.untyped_storage().nbytes() == 3 * 4 * 6  # not the full frame's memory


@pytest.mark.parametrize(
    "height, width, size, rows, cols",
    [
        (5, 5, 2, (2, 4), (2, 4)),  # round(1.5) == 2: half to even, like torchvision
        (6, 6, 3, (2, 5), (2, 5)),  # round(1.5) == 2
        (7, 7, 2, (2, 4), (2, 4)),  # round(2.5) == 2
        (4, 9, (2, 4), (1, 3), (2, 6)),  # round(1.0), round(2.5)
    ],
)
def test_center_crop_windows_match_torchvision_rounding(height, width, size, rows, cols):
    image = torch.arange(height * width).reshape(height, width)
    assert torch.equal(funrec.center_crop(image, size), image[rows[0] : rows[1], cols[0] : cols[1]])


def test_center_crop_pads_with_zeros_when_larger():
    image = torch.ones(2, 3, dtype=torch.int64)
    out = funrec.center_crop(image, (5, 6))
    # torchvision pads (6-3)//2=1 left, 2 right, (5-2)//2=1 on top, 2 below.
    expected = torch.zeros(5, 6, dtype=torch.int64)
    expected[1:3, 1:4] = 1
    assert torch.equal(out, expected)


def test_resize_and_bad_sizes():
    frames = funrec.fold(funrec.frames(resize=(4, 5)), pixel_steps(2))
    assert funrec.video(frames).shape == (2, 3, 4, 5)
    for bad in (0, (3,), (2, -1), 2.5, True):
        with pytest.raises(RecorderError, match="crop must be"):
            funrec.frames(crop=bad)


# -- bad arguments fail when given --------------------------------------------------


@pytest.mark.parametrize("layout, fix", [("hwc", "did you mean 'HWC'"), ("BGR", "pass one of")])
def test_a_bad_layout_fails_at_construction(layout, fix):
    with pytest.raises(LayoutError, match=f"layout={layout!r} is not a layout: {fix}"):
        funrec.frames(layout=layout)


# -- float streams: the cached scale is visible -------------------------------------


def test_a_doubtful_float_scale_is_warned_once_and_clipping_is_counted():
    first = torch.linspace(-1, 1, 8 * 8 * 3).reshape(8, 8, 3)  # normalised to [-1, 1]
    steps = [TensorDict({"obs": v}) for v in (first, first.abs(), first.abs(), -first.abs())]
    rec = funrec.frames("obs")
    with pytest.warns(RuntimeWarning, match=r"key 'obs'.*\[-1, 1\].*negative.*layout=Layout") as w:
        state = funrec.fold(rec, steps)
    assert len([x for x in w if "obs" in str(x.message)]) == 1  # once per stream
    negative = int((first < 0).sum()) + int((-first.abs() < 0).sum())
    assert state.clipped == negative
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plain [0, 1] stream warns nothing
        funrec.fold(rec, [TensorDict({"obs": torch.rand(8, 8, 3)})] * 2)
    assert len(funrec.video(state)) == 4


# -- states of fixed structure -------------------------------------------------------


def structure(state):
    """The tree structure of a state: its types, field names and the shapes it decided."""
    if isinstance(state, funrec.NamedState):
        return ("named", tuple((k, structure(v)) for k, v in state.items()))
    if isinstance(state, funrec.GateState):
        return ("gate", structure(state.inner))
    if isinstance(state, funrec.FramesState):
        return ("frames", state.layout)
    if isinstance(state, funrec.EpisodeStatsState):
        return ("episodes", len(state.running_reward), len(state.running_length))
    if isinstance(state, funrec.TensorDictsState):
        return ("steps", state.batch_size)
    raise AssertionError(type(state))


def test_init_with_an_example_fixes_the_structure_for_good():
    batch = torch.stack([stamped_frame(i) for i in range(3)])
    steps = [
        TensorDict(
            {
                "pixels": batch,
                "next": {"reward": torch.ones(3, 1), "done": torch.ones(3, 1, dtype=torch.bool)},
            },
            batch_size=[3],
        )
    ] * 4
    rec = funrec.named(
        video=funrec.frames(skip=2), stats=funrec.episode_stats(), steps=funrec.tensordicts()
    )
    state = rec.init(steps[0])
    before = structure(state)
    assert funrec.counts(state)["video"] == Counts()  # the example is not recorded
    for td in steps:
        state = rec.step(state, td)
        assert structure(state) == before


# -- merged episodes keep their origin -------------------------------------------------


def episode_steps(dones: list[bool], reward: float) -> list[TensorDict]:
    """One sub-env's transitions: ``reward`` each step, done where ``dones`` says."""
    return [
        TensorDict({"next": {"reward": torch.tensor([reward]), "done": torch.tensor([d])}})
        for d in dones
    ]


@given(st.lists(st.lists(st.booleans(), max_size=12), min_size=1, max_size=4))
def test_merged_episodes_say_which_worker_each_came_from(workers):
    """Worker w's reward is w + 1: every merged episode's return matches its origin."""
    rec = funrec.named(stats=funrec.every(1, funrec.episode_stats()))
    folds = [funrec.fold(rec, episode_steps(d, w + 1.0)) for w, d in enumerate(workers)]
    marked = [funrec.with_origin(f, f"worker{w}") for w, f in enumerate(folds)]
    merged = marked[0]
    for state in marked[1:]:
        merged = funrec.merge(merged, state)
    episodes = funrec.episodes(merged["stats"])
    # the documented rule: each worker's episodes, in worker order, marked with it
    assert episodes == tuple(
        e._replace(origin=f"worker{w}")
        for w, f in enumerate(folds)
        for e in funrec.episodes(f["stats"])
    )
    for e in episodes:
        assert e.total_reward == e.length * (int(e.origin.removeprefix("worker")) + 1)
    assert funrec.counts(merged)["stats"].recorded == sum(map(sum, workers))


def test_marking_a_merged_state_again_keeps_the_workers_under_the_node():
    rec = funrec.episode_stats()
    state = funrec.with_origin(funrec.fold(rec, episode_steps([False, True], 1.0)), "worker0")
    node = funrec.with_origin(state, "node1")
    assert funrec.episodes(node) == (funrec.Episode(0, 2.0, 2, "node1/worker0"),)
    assert funrec.episodes(funrec.fold(rec, episode_steps([True], 1.0)))[0].origin == ""
    assert pickle.loads(pickle.dumps(node)) == node


@pytest.mark.parametrize("origin", ["", None, 3])
def test_a_bad_origin_fails_even_for_a_state_without_episodes(origin):
    for state in (funrec.frames().init(), funrec.episode_stats().init()):
        with pytest.raises(RecorderError, match="with_origin"):
            funrec.with_origin(state, origin)


def test_states_without_episodes_are_not_changed_by_an_origin():
    state = funrec.fold(funrec.frames(), pixel_steps(3))
    assert funrec.with_origin(state, "worker0") is state


# -- the core stays pure ----------------------------------------------------------------


def core_modules():
    yield from CORE.glob("*.py")  # funrec/testing/ and funrec/writers/ are not the core


@pytest.mark.parametrize("path", list(core_modules()), ids=lambda p: p.name)
def test_the_core_imports_nothing_of_the_shell(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
            names |= {f"{node.module}.{a.name}" for a in node.names}
    bad = sorted(n for n in names if any(part in SHELL_ONLY for part in n.split(".")))
    assert not bad, f"{path.name} imports {bad}"


def test_importing_the_core_loads_no_shell_module():
    code = (
        "import sys, torch, tensordict; before = set(sys.modules); "
        "import funrec, funrec.rules, funrec.merge, funrec.images; "
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[-1] in "
        f"{SHELL_ONLY!r} or m.startswith('funrec.writers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_done_flags_takes_one_key_or_a_list_of_keys():
    td = TensorDict({"done": torch.tensor([False, True]), "stop": torch.tensor([True, False])}, [2])
    assert rules.done_flags(td, ["done", "stop"]).tolist() == [True, True]  # a list: many keys
    assert rules.done_flags(td, "done").tolist() == [False, True]
    assert rules.done_flags(td, ("done",)).tolist() == [False, True]  # a tuple: one key
