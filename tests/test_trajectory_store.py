"""Trajectory store: steps stream to disk and load back equal, lazily, with episodes."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tensordict import MemoryMappedTensor, TensorDict

from funrec.writers import TrajectoryWriter, WriterError, episode, load


def step(t: int, batch: tuple[int, ...] = (), done_every: int = 4) -> TensorDict:
    """Step ``t``: values carry ``t``; env ``b`` is done when ``(t + b + 1) % done_every == 0``."""
    envs = torch.arange(int(torch.tensor(batch).prod())).reshape(batch)
    done = ((t + envs) % done_every == done_every - 1)[..., None]
    return TensorDict(
        {
            "obs": torch.full((*batch, 3), float(t)),
            "action": torch.full((*batch,), t, dtype=torch.int64),
            "pixels": torch.full((*batch, 3, 4, 5), t % 256, dtype=torch.uint8),
            "next": {"done": done, "reward": torch.full((*batch, 1), 0.5 * t)},
            "half": torch.full((*batch,), t, dtype=torch.bfloat16),
        },
        batch_size=batch,
    )


def test_steps_load_back_equal(tmp_path):
    steps = [step(t) for t in range(150)]
    with TrajectoryWriter(tmp_path / "s", first_chunk=8) as writer:
        for td in steps:
            writer.append(td)
    loaded = load(tmp_path / "s")
    expected = torch.stack(steps)
    assert loaded.batch_size == (150,)
    for key in expected.keys(include_nested=True, leaves_only=True):
        assert torch.equal(loaded[key], expected[key]), key
    assert isinstance(loaded["obs"], MemoryMappedTensor)  # mapped, read on access


def test_extend_writes_a_stacked_rollout(tmp_path):
    rollout = torch.stack([step(t, (2,)) for t in range(30)])
    with TrajectoryWriter(tmp_path / "s", first_chunk=4) as writer:
        writer.extend(rollout[:7])
        writer.extend(rollout[7:])
    loaded = load(tmp_path / "s")
    assert loaded.batch_size == (30, 2)
    assert torch.equal(loaded["next", "reward"], rollout["next", "reward"])
    assert torch.equal(loaded["pixels"], rollout["pixels"])


def test_files_are_trimmed_on_close(tmp_path):
    with TrajectoryWriter(tmp_path / "s", first_chunk=64) as writer:
        for t in range(10):
            writer.append(step(t))
        # preallocated: the first chunk holds 64 steps
        assert (tmp_path / "s" / "obs.memmap").stat().st_size == 64 * 3 * 4
    assert (tmp_path / "s" / "obs.memmap").stat().st_size == 10 * 3 * 4
    assert (tmp_path / "s" / "next" / "reward.memmap").stat().st_size == 10 * 4


def test_chunks_grow_geometrically_and_commits_come_every_commit_steps(tmp_path):
    path = tmp_path / "s"
    writer = TrajectoryWriter(path, first_chunk=4, commit_steps=10, commit_seconds=3600)
    sizes, committed = [], []
    for t in range(40):
        writer.append(step(t))
        sizes.append((path / "action.memmap").stat().st_size // 8)
        committed.append(json.loads((path / "index.json").read_text())["steps"])
    writer.close()
    assert sorted(set(sizes)) == [4, 12, 28, 60]  # chunks of 4, 8, 16, 32 steps
    assert committed == [10 * ((t + 1) // 10) for t in range(40)]  # whatever the chunks


def test_chunk_size_is_bounded_in_bytes(tmp_path):
    path = tmp_path / "s"
    with TrajectoryWriter(path, first_chunk=4, max_chunk_bytes=1000) as writer:
        for t in range(200):
            writer.append(step(t))
            # no chunk grows past 1000 bytes worth of steps (~10 steps of ~98 bytes)
            capacity = (path / "action.memmap").stat().st_size // 8
            assert capacity - writer.steps < 11
    assert load(path)["action"].tolist() == list(range(200))


def test_episode_ids_follow_the_done_key(tmp_path):
    with TrajectoryWriter(tmp_path / "s") as writer:
        for t in range(8):
            writer.append(step(t, (2,)))
    loaded = load(tmp_path / "s")
    # env 0 is done at t=3, 7; env 1 at t=2, 6. Ids count episodes by start.
    assert loaded["episode"][:, 0].tolist() == [0, 0, 0, 0, 3, 3, 3, 3]
    assert loaded["episode"][:, 1].tolist() == [1, 1, 1, 2, 2, 2, 2, 4]
    second = episode(loaded, 2)
    assert second.batch_size == (4,)
    assert second["action"].tolist() == [3, 4, 5, 6]
    assert bool(second["next", "done"][-1]) and not second["next", "done"][:-1].any()


def test_flat_done_and_no_episodes(tmp_path):
    with TrajectoryWriter(tmp_path / "a", done_key="stop") as writer:
        for t in range(4):
            writer.append(TensorDict({"x": torch.tensor(t), "stop": torch.tensor(t == 1)}))
    assert load(tmp_path / "a")["episode"].tolist() == [0, 0, 1, 1]
    with TrajectoryWriter(tmp_path / "b", done_key=None, episode_key=None) as writer:
        writer.append(TensorDict({"x": torch.tensor(1)}))
    assert list(load(tmp_path / "b").keys()) == ["x"]
    with pytest.raises(KeyError, match="episode_key=None"):
        episode(load(tmp_path / "b"), 0)


def test_closed_store_is_a_tensordict_memmap_directory(tmp_path):
    steps = torch.stack([step(t, (3,)) for t in range(9)])
    with TrajectoryWriter(tmp_path / "s") as writer:
        writer.extend(steps)
    opened = TensorDict.load_memmap(tmp_path / "s")
    assert opened.batch_size == (9, 3)
    assert torch.equal(opened["next", "reward"], steps["next", "reward"])
    assert torch.equal(opened["half"], steps["half"])
    assert torch.equal(opened["episode"], load(tmp_path / "s")["episode"])


def test_loaded_store_feeds_torchrl_slice_sampler(tmp_path):
    from torchrl.data import LazyTensorStorage, ReplayBuffer, SliceSampler

    with TrajectoryWriter(tmp_path / "s") as writer:
        for t in range(40):
            writer.append(step(t))
    data = load(tmp_path / "s")
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(40), sampler=SliceSampler(slice_len=4), batch_size=8
    )
    buffer.extend(data)
    sample = buffer.sample()
    slices = sample["episode"].reshape(2, 4)
    assert (slices == slices[:, :1]).all()  # every slice stays inside one episode


def test_empty_store_loads_empty(tmp_path):
    TrajectoryWriter(tmp_path / "s").close()
    assert load(tmp_path / "s").batch_size == (0,)


def test_bad_steps_name_key_shape_and_fix_and_write_nothing(tmp_path):
    writer = TrajectoryWriter(tmp_path / "s")
    writer.append(step(0))
    wrong_shape = step(1)
    wrong_shape["obs"] = torch.zeros(4)
    with pytest.raises(ValueError, match=r"key \('obs',\) has shape \(4,\).*\(3,\)"):
        writer.append(wrong_shape)
    wrong_dtype = step(1)
    wrong_dtype["action"] = wrong_dtype["action"].float()
    with pytest.raises(ValueError, match=r"torch.float32.*torch.int64.*\.to\(dtype\)"):
        writer.append(wrong_dtype)
    with pytest.raises(ValueError, match="keys"):
        writer.append(step(1).exclude("obs"))
    with pytest.raises(ValueError, match=r"batch size \(2,\)"):
        writer.append(step(1, (2,)))
    writer.append(step(1))
    writer.close()
    assert load(tmp_path / "s")["action"].tolist() == [0, 1]


def test_extend_needs_a_time_dim(tmp_path):
    writer = TrajectoryWriter(tmp_path / "s")
    with pytest.raises(ValueError, match=r"\[T, \*batch\].*append\(\)"):
        writer.extend(step(0))


def test_first_step_checks(tmp_path):
    with pytest.raises(ValueError, match=r"no done key \('next', 'done'\).*done_key=None"):
        TrajectoryWriter(tmp_path / "a").append(TensorDict({"x": torch.zeros(1)}))
    with pytest.raises(ValueError, match=r"already have a key 'episode'.*episode_key"):
        TrajectoryWriter(tmp_path / "b", done_key=None).append(
            TensorDict({"episode": torch.zeros(1)})
        )
    with pytest.raises(ValueError, match="not a tensor"):
        TrajectoryWriter(tmp_path / "c", done_key=None).append(TensorDict({"s": "text"}))
    with pytest.raises(TypeError, match="TensorDict"):
        TrajectoryWriter(tmp_path / "d", done_key=None).append({"x": torch.zeros(1)})


def test_existing_store_is_never_overwritten(tmp_path):
    with TrajectoryWriter(tmp_path / "s", done_key=None) as writer:
        writer.append(TensorDict({"x": torch.ones(1)}))
    with pytest.raises(FileExistsError, match="new path"):
        TrajectoryWriter(tmp_path / "s")
    assert load(tmp_path / "s")["x"].tolist() == [[1.0]]


def test_write_after_close_and_load_of_a_non_store(tmp_path):
    writer = TrajectoryWriter(tmp_path / "s", done_key=None)
    writer.close()
    with pytest.raises(WriterError, match="closed"):
        writer.append(TensorDict({"x": torch.ones(1)}))
    with pytest.raises(FileNotFoundError, match="TrajectoryWriter"):
        load(tmp_path)


# -- image keys stored as mp4


def smooth_images(steps: int, entries: int) -> torch.Tensor:
    """uint8 [T, entries, 64, 96, 3] gradients that change over time and between entries."""
    image = torch.empty(steps, entries, 64, 96, 3)
    image[..., 0] = torch.linspace(0, 255, 96)
    image[..., 1] = torch.linspace(0, 255, 64)[:, None]
    image[..., 2] = (torch.arange(steps)[:, None] * 4 + 60 * torch.arange(entries)[None])[
        ..., None, None
    ]
    return image.clamp(0, 255).round().to(torch.uint8)


@pytest.mark.parametrize("order", ["HWC", "CHW"])
def test_video_keys_are_stored_as_mp4_and_decoded_on_load(tmp_path, order):
    images = smooth_images(40, 2)
    if order == "CHW":
        images = images.permute(0, 1, 4, 2, 3).contiguous()
    path = tmp_path / "s"
    with TrajectoryWriter(path, video_keys=[("next", "pixels")], fps=10) as writer:
        for t in range(40):
            td = step(t, (2,))
            td["next", "pixels"] = images[t]
            writer.append(td)
    loaded = load(path)
    assert loaded.batch_size == (40, 2)
    decoded = loaded["next", "pixels"]
    assert decoded.shape == images.shape and decoded.dtype == torch.uint8
    assert float((decoded.float() - images.float()).abs().mean()) <= 3  # mp4's bound
    assert torch.equal(loaded["obs"], torch.stack([step(t, (2,)) for t in range(40)])["obs"])
    videos = sorted((path / "next").glob("pixels.*.mp4"))
    assert [v.name for v in videos] == ["pixels.0.mp4", "pixels.1.mp4"]
    assert sum(v.stat().st_size for v in videos) * 10 < images.numel()  # 10x+ smaller
    assert ("next", "pixels") not in TensorDict.load_memmap(path).keys(include_nested=True)


def test_video_keys_must_be_rgb_uint8_images(tmp_path):
    td = step(0)
    two_channels = td.set("pixels", torch.zeros(4, 5, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"key \('pixels',\) has images of shape \(4, 5, 2\)"):
        TrajectoryWriter(tmp_path / "a", video_keys=["pixels"]).append(two_channels)
    with pytest.raises(ValueError, match=r"got torch.float32.*uint8 RGB.*normalize"):
        TrajectoryWriter(tmp_path / "b", video_keys=["obs"]).append(td)
    writer = TrajectoryWriter(tmp_path / "c", video_keys=["image"], fps=5)
    with pytest.raises(ValueError, match="got nothing"):
        writer.append(td)
    td["image"] = torch.zeros(8, 8, 3, dtype=torch.uint8)
    writer.append(td)  # a refused first step changed nothing
    writer.close()
    assert load(tmp_path / "c")["image"].shape == (1, 8, 8, 3)


# -- property: any way of writing loads back the same steps, and commits keep up


@given(
    first_chunk=st.integers(1, 6),
    commit_steps=st.integers(1, 12),
    groups=st.lists(
        st.tuples(st.integers(1, 9), st.booleans(), st.booleans()), min_size=1, max_size=8
    ),
)
@settings(deadline=None)
def test_any_write_pattern_loads_back_and_a_crash_loses_less_than_commit_steps(
    tmp_path_factory, first_chunk, commit_steps, groups
):
    path = tmp_path_factory.mktemp("store") / "s"
    total = sum(size for size, _, _ in groups)
    steps = torch.stack([step(t, (2,)) for t in range(total)])
    writer = TrajectoryWriter(path, first_chunk=first_chunk, commit_steps=commit_steps)
    start = 0
    for size, as_extend, flush in groups:
        if as_extend:
            writer.extend(steps[start : start + size])
        else:
            for t in range(start, start + size):
                writer.append(steps[t])
        start += size
        if flush:
            writer.flush()
        committed = load(path)  # what a crash right now would leave
        assert start - commit_steps < len(committed) <= start
        if flush:
            assert len(committed) == start
        assert torch.equal(committed["obs"], steps["obs"][: len(committed)])
    writer.close()
    loaded = load(path)
    for key in steps.keys(include_nested=True, leaves_only=True):
        assert torch.equal(loaded[key], steps[key]), key
