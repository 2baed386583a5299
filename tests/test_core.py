"""The core recorders against a plain-Python reference model, and their invariants."""

import pickle

import pytest
import torch
from conftest import frame_index, pixel_steps, stamped_frame
from hypothesis import given
from hypothesis import strategies as st
from tensordict import LazyStackedTensorDict, TensorDict

import funrec
from funrec import BufferFullError, Counts, LayoutError, MissingKeyError, RecorderError
from funrec.layout import detect, normalize

caps = st.none() | st.integers(1, 12)
policies = st.sampled_from(["drop_newest", "drop_oldest"])


def recorded_indices(state) -> list[int]:
    return [frame_index(f) for f in funrec.video(state)]


def assert_counts_add_up(state) -> None:
    c = funrec.counts(state)
    assert c.seen == c.recorded + c.skipped + c.dropped


@given(n=st.integers(0, 60), skip=st.integers(1, 5), cap=caps, overflow=policies)
def test_frames_match_list_slicing(n, skip, cap, overflow):
    state = funrec.fold(funrec.frames(skip=skip, max_frames=cap, overflow=overflow), pixel_steps(n))
    kept = list(range(n))[::skip]
    if cap is not None:
        kept = kept[:cap] if overflow == "drop_newest" else kept[-cap:]
    assert recorded_indices(state) == kept
    assert funrec.counts(state) == Counts(
        seen=n,
        recorded=len(kept),
        skipped=n - len(range(n)[::skip]),
        dropped=len(range(n)[::skip]) - len(kept),
    )


@given(
    n=st.integers(0, 60),
    skip=st.integers(1, 4),
    cap=caps,
    overflow=policies,
    drain_at=st.sets(st.integers(0, 60)),
)
def test_draining_streams_every_recorded_frame_once(n, skip, cap, overflow, drain_at):
    """With drains in between, the frames drained plus those held are what a model keeps."""
    rec = funrec.frames(skip=skip, max_frames=cap, overflow=overflow)
    state, out = rec.init(), []
    held, model_out = [], []  # the reference model: a plain list per buffer
    for i, td in enumerate(pixel_steps(n)):
        if i in drain_at:
            items, state = funrec.drain(state)
            out += [frame_index(f) for f in items]
            model_out, held = model_out + held, []
        state = rec.step(state, td)
        if i % skip:
            continue
        if cap is None or len(held) < cap:
            held.append(i)
        elif overflow == "drop_oldest":
            held = [*held[1:], i]
    assert out == model_out
    assert recorded_indices(state) == held
    c = funrec.counts(state)
    assert c.recorded == len(out) + len(held)
    assert_counts_add_up(state)


@given(n=st.integers(1, 30), cap=st.integers(1, 10))
def test_overflow_error_keeps_the_state(n, cap):
    rec = funrec.frames(max_frames=cap, overflow="error")
    steps = pixel_steps(n)
    state = funrec.fold(rec, steps[:cap])
    if n <= cap:
        assert recorded_indices(funrec.fold(rec, steps)) == list(range(n))
        return
    with pytest.raises(BufferFullError, match="max_frames=") as err:
        rec.step(state, steps[cap])
    assert "drain" in str(err.value)
    assert recorded_indices(state) == list(range(cap))
    _, emptied = funrec.drain(state)  # after a drain, recording goes on
    assert recorded_indices(rec.step(emptied, steps[cap])) == [cap]


@given(
    n=st.integers(0, 25),
    split=st.integers(0, 25),
    skip=st.integers(1, 3),
    cap=caps,
    overflow=policies,
)
def test_fold_is_a_monoid_action(n, split, skip, cap, overflow):
    rec = funrec.frames(skip=skip, max_frames=cap, overflow=overflow)
    steps = pixel_steps(n)
    split = min(split, n)
    whole = funrec.fold(rec, steps)
    assert whole == funrec.fold(rec, steps[split:], state=funrec.fold(rec, steps[:split]))
    assert whole == funrec.fold(rec, steps)  # deterministic


@given(n=st.integers(0, 12), skip=st.integers(1, 3), cap=caps, overflow=policies)
def test_step_is_pure(n, skip, cap, overflow):
    rec = funrec.named(
        video=funrec.frames(skip=skip, max_frames=cap, overflow=overflow),
        steps=funrec.tensordicts(max_steps=cap, overflow=overflow),
    )
    state = funrec.fold(rec, pixel_steps(n))
    frozen = pickle.loads(pickle.dumps(state))
    td = TensorDict({"pixels": stamped_frame(99)})
    td_before = td.clone()
    rec.step(state, td)
    assert state == frozen
    assert (td == td_before).all()


def test_frames_are_copied_from_a_reused_buffer():
    buffer = stamped_frame(1)
    td = TensorDict({"pixels": buffer})
    state = funrec.frames().step(funrec.frames().init(), td)
    buffer.fill_(7)  # an env reusing its render buffer
    assert recorded_indices(state) == [1]


def test_batched_and_chw_frames():
    batch = torch.stack([stamped_frame(i) for i in range(4)])  # [4, H, W, 3]
    state = funrec.fold(funrec.frames(), [TensorDict({"pixels": batch}, batch_size=[4])] * 2)
    clip = funrec.video(state)
    assert clip.shape == (2, 4, 3, 6, 8)
    assert [frame_index(f) for f in clip[1]] == [0, 1, 2, 3]
    chw = stamped_frame(5).permute(2, 0, 1)
    assert recorded_indices(
        funrec.frames().step(funrec.frames().init(), TensorDict({"pixels": chw}))
    ) == [5]


def test_long_state_pickles_and_compares():
    state = funrec.fold(funrec.frames(), pixel_steps(5000))
    again = pickle.loads(pickle.dumps(state))
    assert again == state and len(again.items) == 5000
    assert again != funrec.fold(funrec.frames(), pixel_steps(5000, start=1))


def test_tensordicts_records_detached_copies_of_selected_keys():
    obs = torch.arange(3.0, requires_grad=True)
    steps = [TensorDict({"obs": obs * t, "other": torch.ones(2)}) for t in range(4)]
    state = funrec.fold(funrec.tensordicts(["obs"], skip=2), steps)
    traj = funrec.trajectory(state)
    assert traj.batch_size == (2,) and set(traj.keys()) == {"obs"}
    assert torch.equal(traj["obs"], torch.stack([obs.detach() * 0, obs.detach() * 2]))
    assert not traj["obs"].requires_grad
    assert funrec.counts(state) == Counts(seen=4, recorded=2, skipped=2, dropped=0)


def test_episode_stats_per_sub_env():
    # Three sub-envs; env 0 ends at steps 1 and 4, env 1 at step 3, env 2 never.
    rewards = torch.tensor([[1.0, 10.0, 100.0]] * 6) * torch.arange(1, 7)[:, None]
    dones = torch.zeros(6, 3, dtype=torch.bool)
    dones[1, 0] = dones[4, 0] = dones[3, 1] = True
    steps = [
        TensorDict(
            {"next": {"reward": rewards[t, :, None], "done": dones[t, :, None]}}, batch_size=[3]
        )
        for t in range(6)
    ]
    state = funrec.fold(funrec.episode_stats(), steps)
    assert funrec.episodes(state) == (
        funrec.Episode(env=0, total_reward=1.0 + 2.0, length=2),
        funrec.Episode(env=1, total_reward=10.0 * (1 + 2 + 3 + 4), length=4),
        funrec.Episode(env=0, total_reward=3.0 + 4.0 + 5.0, length=3),
    )
    assert state.running_length == (1, 2, 6)
    items, drained = funrec.drain(state)
    assert len(items) == 3 and funrec.episodes(drained) == ()
    assert drained.running_length == (1, 2, 6)


def test_gates_and_their_counts():
    steps = pixel_steps(20)
    assert recorded_indices(funrec.fold(funrec.every(3, funrec.frames()), steps)) == [
        0,
        3,
        6,
        9,
        12,
        15,
        18,
    ]
    odd = funrec.when(
        lambda td: frame_index(td["pixels"].permute(2, 0, 1)) % 2 == 1, funrec.frames(skip=2)
    )
    state = funrec.fold(odd, steps)
    assert recorded_indices(state) == [1, 5, 9, 13, 17]
    assert funrec.counts(state) == Counts(seen=20, recorded=5, skipped=15, dropped=0)
    window = funrec.on_steps(lambda t: t % 10 == 2, funrec.frames(), length=3)
    assert recorded_indices(funrec.fold(window, steps)) == [2, 3, 4, 12, 13, 14]


def test_on_episodes_with_capped_cubic():
    # Episodes of 2 steps each; record episodes 0, 1 and 8.
    steps = [
        TensorDict({"pixels": stamped_frame(t), "next": {"done": torch.tensor([t % 2 == 1])}})
        for t in range(20)
    ]
    state = funrec.fold(funrec.on_episodes(funrec.capped_cubic, funrec.frames()), steps)
    assert recorded_indices(state) == [0, 1, 2, 3, 16, 17]
    assert [e for e in range(2000) if funrec.capped_cubic(e)] == [k**3 for k in range(10)] + [1000]


def test_pipeline_reads_left_to_right():
    steps = [
        TensorDict({"pixels": stamped_frame(t, height=10), "big": torch.zeros(100)})
        for t in range(9)
    ]
    crop = funrec.map_td(lambda td: td.copy().set("pixels", td["pixels"][1:-1]))
    rec = funrec.pipeline(funrec.select(["pixels"]), crop, funrec.every(2), funrec.frames())
    state = funrec.fold(rec, steps)
    assert funrec.video(state).shape == (5, 3, 8, 8)
    assert recorded_indices(state) == [0, 2, 4, 6, 8]
    assert "big" in steps[0] and steps[0]["pixels"].shape == (10, 8, 3)  # untouched


def test_named_fans_out_and_drains_by_name():
    steps = pixel_steps(4)
    rec = funrec.named(
        video=funrec.frames(), steps=funrec.tensordicts(), two=funrec.every(2, funrec.frames())
    )
    state = funrec.fold(rec, steps)
    assert recorded_indices(state["video"]) == [0, 1, 2, 3]
    assert recorded_indices(state["two"]) == [0, 2]
    assert funrec.counts(state)["two"] == Counts(seen=4, recorded=2, skipped=2, dropped=0)
    items, emptied = funrec.drain(state)
    assert set(items) == {"video", "steps", "two"} and len(items["steps"]) == 4
    assert funrec.counts(emptied) == funrec.counts(state)
    assert len(funrec.video(emptied["video"])) == 0


def test_a_failing_named_step_changes_nothing():
    rec = funrec.named(steps=funrec.tensordicts(), video=funrec.frames())
    state = funrec.fold(rec, pixel_steps(3))
    with pytest.raises(MissingKeyError):
        rec.step(state, TensorDict({"other": torch.zeros(1)}))
    assert funrec.counts(state)["steps"].seen == 3


def test_missing_key_names_the_key_and_what_is_there():
    state = funrec.fold(funrec.frames(), pixel_steps(2))
    with pytest.raises(MissingKeyError, match=r"'rgb'.*\['pixels'\]"):
        funrec.frames("rgb").step(state, pixel_steps(1)[0])
    assert recorded_indices(state) == [0, 1]


def test_state_vector_is_not_an_image():
    td = TensorDict({"observation": torch.zeros(4)})
    with pytest.raises(LayoutError, match=r"frames\('observation'\).*\(4,\).*PixelRenderTransform"):
        funrec.frames("observation").step(funrec.frames("observation").init(), td)


def test_a_frame_of_another_shape_raises_and_keeps_the_state():
    rec = funrec.frames()
    state = funrec.fold(rec, pixel_steps(3))
    frozen = pickle.loads(pickle.dumps(state))
    with pytest.raises(LayoutError, match=r"frames\('pixels'\).*\(12, 8, 3\)"):
        rec.step(state, TensorDict({"pixels": stamped_frame(3, height=12)}))
    assert state == frozen
    assert recorded_indices(rec.step(state, pixel_steps(1, start=3)[0])) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"skip": 0}, "skip must be an integer >= 1"),
        ({"max_frames": 0}, "max_frames must be a positive integer"),
        ({"overflow": "drop_random"}, "overflow must be one of"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(RecorderError, match=match):
        funrec.frames(**kwargs)


def test_bad_combinator_arguments():
    with pytest.raises(RecorderError, match="n must be an integer >= 1"):
        funrec.every(0, funrec.frames())
    with pytest.raises(RecorderError, match="must end with a recorder"):
        funrec.pipeline(funrec.every(2))
    with pytest.raises(RecorderError, match="unbatched"):
        rec = funrec.on_episodes(funrec.capped_cubic, funrec.frames())
        rec.step(
            rec.init(),
            TensorDict({"next": {"done": torch.zeros(2, 1, dtype=torch.bool)}}, batch_size=[2]),
        )


def test_a_batch_of_state_vectors_is_not_an_image():
    td = TensorDict({"observation": torch.zeros(16, 4)}, batch_size=[16])  # [B, 4]
    rec = funrec.frames("observation")
    with pytest.raises(LayoutError, match=r"\(16, 4\).*batch size \(16,\).*PixelRenderTransform"):
        rec.step(rec.init(), td)


# --- The steady state: a uint8 RGB stream is copied without normalize's checks ----------------


@given(
    order=st.sampled_from(["HWC", "CHW"]),
    batch=st.sampled_from([(), (2,), (2, 3)]),
    contiguous=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_steady_frames_equal_normalize(order, batch, contiguous, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (*batch, 5, 7, 3) if order == "HWC" else (*batch, 3, 5, 7)
    steps = [torch.randint(0, 256, shape, dtype=torch.uint8, generator=g) for _ in range(3)]
    if not contiguous:  # a transposed view of the same values
        steps = [x.transpose(-1, -2).contiguous().transpose(-1, -2) for x in steps]
    rec = funrec.frames(layout=order)
    state = funrec.fold(rec, [TensorDict({"pixels": x}, batch_size=batch) for x in steps])
    layout = detect(steps[0], order)
    for held, x in zip(funrec.drain(state)[0], steps, strict=True):
        assert torch.equal(held, normalize(x, layout))
        assert held.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()


def test_steady_state_still_checks_dtype_and_shape():
    rec = funrec.frames()
    state = funrec.fold(rec, pixel_steps(2))
    for bad, match in [
        (stamped_frame(2).float(), r"frames\('pixels'\).*dtype uint8.*dtype float32"),
        (stamped_frame(2).permute(2, 0, 1), r"frames\('pixels'\).*\(3, 6, 8\)"),
    ]:
        with pytest.raises(LayoutError, match=match):
            rec.step(state, TensorDict({"pixels": bad}))
    assert recorded_indices(state) == [0, 1]


def test_one_recorder_steps_streams_of_different_layouts():
    # The recorder caches the plan of the last layout it saw: alternating streams must not mix.
    rec = funrec.frames()
    hwc = rec.init(TensorDict({"pixels": stamped_frame(0)}))
    chw = rec.init(TensorDict({"pixels": stamped_frame(0).permute(2, 0, 1)}))
    for i in range(3):
        hwc = rec.step(hwc, TensorDict({"pixels": stamped_frame(i)}))
        chw = rec.step(chw, TensorDict({"pixels": stamped_frame(10 + i).permute(2, 0, 1)}))
    assert recorded_indices(hwc) == [0, 1, 2]
    assert recorded_indices(chw) == [10, 11, 12]
    assert funrec.video(hwc).shape == funrec.video(chw).shape == (3, 3, 6, 8)


def test_frames_read_nested_keys_and_lazy_stacks():
    nested = TensorDict({"pixels": stamped_frame(3), "next": {"pixels": stamped_frame(4)}})
    assert recorded_indices(funrec.fold(funrec.frames(("next", "pixels")), [nested] * 2)) == [4, 4]
    tds = [TensorDict({"pixels": stamped_frame(i)}) for i in (1, 2)]
    lazy = LazyStackedTensorDict.lazy_stack(tds)
    clip = funrec.video(funrec.fold(funrec.frames(), [lazy]))
    assert [frame_index(f) for f in clip[0]] == [1, 2]
    with pytest.raises(MissingKeyError, match=r"\('next', 'rgb'\).*\('next', 'pixels'\)"):
        funrec.frames(("next", "rgb")).step(funrec.frames().init(), nested)
