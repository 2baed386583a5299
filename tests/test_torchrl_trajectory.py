"""funrec_torchrl.TensorDictRecorder: dump() works and the file loads back to what was recorded."""

from __future__ import annotations

import pickle

import pytest
import torch
from funrec_torchrl import TensorDictRecorder
from test_torchrl_envs import StampEnv, stamp_envs
from torchrl.envs import TransformedEnv, check_env_specs

import funrec
from funrec.writers import WriterError


def load(path) -> torch.Tensor:
    return torch.load(path, weights_only=False)


def test_dump_writes_out_file_base_and_loads_back_equal(tmp_path):
    base = tmp_path / "run"
    env = TransformedEnv(StampEnv(), TensorDictRecorder(str(base), skip=1))
    td = env.rollout(5)
    env.transform.dump()
    saved = load(tmp_path / "run_tensordict.t")
    assert saved.batch_size == (5,)
    # the step TensorDicts are the "next" parts of the rollout, reset left out
    expected = td["next"].exclude("reward")
    assert (saved.exclude("reward") == expected).all()
    assert torch.equal(saved["reward"], td["next", "reward"])


def test_skip_keeps_the_first_and_every_skip_th_step(tmp_path):
    base = tmp_path / "run"
    env = TransformedEnv(StampEnv(), TensorDictRecorder(str(base), skip=2, in_keys=["pixels"]))
    td = env.rollout(5)
    env.transform.dump(suffix="a")
    saved = load(tmp_path / "run_a_tensordict.t")
    assert list(saved.keys()) == ["pixels"]
    assert torch.equal(saved["pixels"], td["next", "pixels"][::2])
    assert funrec.counts(env.transform.state) == funrec.Counts(seen=6, recorded=3, skipped=3)


def test_skip_reset_false_keeps_the_reset_without_the_adapters_mark(tmp_path):
    base = tmp_path / "run"
    env = TransformedEnv(stamp_envs(2, 3), TensorDictRecorder(str(base), skip_reset=False, skip=1))
    td = env.rollout(2)
    env.transform.dump()
    saved = load(tmp_path / "run_tensordict.t")
    assert saved.batch_size == (3, 2)
    assert torch.equal(saved["pixels"][0], td["pixels"][:, 0])
    assert torch.equal(saved["pixels"][1:].transpose(0, 1), td["next", "pixels"])
    assert saved[0].get("_funrec_reset", None) is None
    steps = torch.stack([saved[t] for t in (1, 2)])
    assert torch.equal(steps["reward"], td["next", "reward"].transpose(0, 1))
    env.close()


def test_dump_with_nothing_recorded_writes_nothing(tmp_path):
    recorder = TensorDictRecorder(str(tmp_path / "run"))
    recorder.dump()
    assert list(tmp_path.iterdir()) == []


def test_pickles_with_its_state_and_check_env_specs_passes(tmp_path):
    env = TransformedEnv(StampEnv(), TensorDictRecorder(str(tmp_path / "run"), skip=1))
    check_env_specs(env)
    env.rollout(3)
    copy = pickle.loads(pickle.dumps(env.transform))
    assert copy.state == env.transform.state
    copy.dump()
    assert load(tmp_path / "run_tensordict.t").batch_size[0] == funrec.counts(copy.state).recorded


def test_dump_is_atomic_and_a_failed_dump_keeps_the_tensordicts(tmp_path):
    other = tmp_path / "run_tensordict.t.tmp"
    other.write_bytes(b"another process's temporary file")
    env = TransformedEnv(StampEnv(), TensorDictRecorder(str(tmp_path / "run"), skip=1))
    env.rollout(5)
    blocker = tmp_path / "run_tensordict.t"
    blocker.mkdir()  # the rename cannot replace a directory: the dump fails
    with pytest.raises(WriterError, match=r"run_tensordict\.t.*Is a directory"):
        env.transform.dump()
    assert funrec.counts(env.transform.state).recorded == 5
    assert len(funrec.trajectory(env.transform.state)) == 5  # still held
    blocker.rmdir()
    env.transform.dump()
    assert load(tmp_path / "run_tensordict.t").batch_size == (5,)
    assert other.read_bytes() == b"another process's temporary file"  # never clobbered
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_tensordict.t", other.name]
