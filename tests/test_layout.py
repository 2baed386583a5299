"""funrec.layout: detection rule, exact normalization, errors, and frames() streams."""

import os
import pickle

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from tensordict import NonTensorData, NonTensorStack, TensorDict

import funrec
from funrec import strategies as fst
from funrec.layout import Layout, LayoutError, as_tensor, detect, normalize, out_of_range

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

CHANNEL_COUNTS = {1, 3, 4}


def canonical(rgb_hwc: torch.Tensor) -> torch.Tensor:
    """What normalize must give for a uint8 [*batch, H, W, C] image: [*batch, 3, H, W]."""
    chw = rgb_hwc.movedim(-1, -3)[..., :3, :, :]
    return chw.expand(*chw.shape[:-3], 3, *chw.shape[-2:])


def spec_orders(shape: tuple[int, ...]) -> list[str]:
    """The documented rule (docs/layouts.md), written independently of funrec.layout."""
    if len(shape) == 2:
        return ["HW"]
    if len(shape) < 3:
        return []
    return [o for o, d in (("HWC", shape[-1]), ("CHW", shape[-3])) if d in CHANNEL_COUNTS]


# --- round trip -------------------------------------------------------------------------

VALUE_KINDS = {
    # name: (dtype, scale, exact for every uint8 value)
    "uint8": (torch.uint8, 1),
    "int16": (torch.int16, 1),
    "int64": (torch.int64, 1),
    "uint16": (torch.uint16, 1),
    "float32 [0,1]": (torch.float32, 255),
    "float64 [0,1]": (torch.float64, 255),
    "float16 [0,1]": (torch.float16, 255),
    "float32 [0,255]": (torch.float32, 1),
    "float16 [0,255]": (torch.float16, 1),
    "bfloat16 [0,255]": (torch.bfloat16, 1),
}
JAX_DTYPES = {torch.uint8, torch.int16, torch.float32, torch.float16, torch.bool}


def to_kind(image: torch.Tensor, kind: str) -> torch.Tensor:
    dtype, scale = VALUE_KINDS[kind]
    if scale == 255:
        return (image.double() / 255).to(dtype)
    return image.to(dtype)


def to_container(x: torch.Tensor, container: str):
    if container == "torch":
        return x
    if container == "numpy":
        return x.numpy()
    if container == "numpy negative strides":
        return np.flip(np.flip(x.numpy(), -1).copy(), -1)
    if container == "numpy transposed storage":
        return np.moveaxis(np.ascontiguousarray(np.moveaxis(x.numpy(), -1, 0)), 0, -1)
    if container == "jax":
        return jnp.asarray(x.numpy())
    if container == "torch non-contiguous":
        wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype)
        wide[..., ::2] = x
        return wide[..., ::2]
    if container == "torch transposed storage":
        return x.movedim(-1, 0).contiguous().movedim(0, -1)
    if container == "torch channels_last":
        return x.reshape(-1, *x.shape[-3:]).contiguous(memory_format=torch.channels_last)
    if container == "list of numpy":
        return [part.numpy() for part in x]
    if container == "NonTensorStack":
        return NonTensorStack(*(NonTensorData(part.numpy()) for part in x))
    raise AssertionError(container)


def containers_for(x: torch.Tensor, order: str) -> list[str]:
    names = ["torch", "torch non-contiguous", "torch transposed storage"]
    if x.dtype != torch.bfloat16:
        names += ["numpy", "numpy negative strides", "numpy transposed storage"]
        if x.shape[0] > 1 and x.dim() >= 3:
            names += ["list of numpy", "NonTensorStack"]
    if x.dtype in JAX_DTYPES:
        names.append("jax")
    if order != "HW":
        names.append("torch channels_last")
    return names


@given(
    base=fst.images(order="HWC", dtype="uint8", detectable=False),
    order=st.sampled_from(["HWC", "CHW", "HW"]),
    kind=st.sampled_from(sorted(VALUE_KINDS)),
    data=st.data(),
)
def test_round_trip_is_exact(base, order, kind, data):
    """Canonical HWC uint8 -> any layout, value kind and container -> detect+normalize -> same."""
    channels = base.shape[-1]
    if order == "HW":
        assume(channels == 1)
        moved = base[..., 0]
    elif order == "CHW":
        moved = base.movedim(-1, -3)
    else:
        moved = base
    if VALUE_KINDS[kind][1] == 1 and VALUE_KINDS[kind][0].is_floating_point:
        assume(base.max() > 1)  # a [0,255] float stream is recognized by a value above 1
    x = to_kind(moved, kind)
    container = data.draw(st.sampled_from(containers_for(x, order)), label="container")
    if container == "torch channels_last":
        base = base.reshape(-1, *base.shape[-3:])  # the container flattens the batch
        x = x.reshape(-1, *x.shape[-3:])
    frame = to_container(x, container)
    shape = tuple(x.shape)
    hint = None if spec_orders(shape) == [order] else order
    layout = detect(frame, hint=hint)
    *batch, h, w, c = base.shape
    assert layout == Layout(tuple(batch), order, c, h, w, kind.split()[0], VALUE_KINDS[kind][1])
    out = normalize(frame, layout)
    assert out.dtype == torch.uint8 and out.shape == layout.output_shape
    assert torch.equal(out, canonical(base))


@given(image=fst.images(dtype=st.sampled_from(["uint8", "bool", "float32", "int16", "float16"])))
def test_detect_agrees_across_numpy_torch_jax(image):
    expected = detect(image)
    assert detect(image.numpy()) == expected
    assert detect(jnp.asarray(image.numpy())) == expected
    assert torch.equal(normalize(jnp.asarray(image.numpy()), expected), normalize(image, expected))


# --- the ambiguity rule -----------------------------------------------------------------

small_dims = st.one_of(st.integers(1, 5), st.integers(6, 40))


@given(shape=st.lists(small_dims, min_size=0, max_size=5).map(tuple))
def test_ambiguity_exactly_on_the_documented_set(shape):
    frame = torch.zeros(shape, dtype=torch.uint8)
    orders = spec_orders(shape)
    if len(orders) == 2:
        with pytest.raises(LayoutError, match="ambiguous") as err:
            detect(frame)
        assert str(shape) in str(err.value)
        assert "HWC" in str(err.value) and "CHW" in str(err.value)
        for hint in orders:  # a hint settles it
            assert detect(frame, hint=hint).order == hint
    elif len(orders) == 1:
        layout = detect(frame)
        assert layout.order == orders[0]
        assert layout.shape == shape
        assert normalize(frame, layout).shape == layout.output_shape
    else:
        with pytest.raises(LayoutError, match="no frame layout") as err:
            detect(frame)
        assert str(shape) in str(err.value)


@pytest.mark.parametrize(
    ("shape", "order"),
    [
        ((3, 8, 3), None),
        ((4, 4, 4), None),
        ((1, 84, 1), None),
        ((84, 84, 3), "HWC"),
        ((3, 84, 84), "CHW"),
        ((1, 84, 84), "CHW"),
        ((84, 84), "HW"),
        ((16, 4, 84, 84), "CHW"),
        ((2, 3, 64, 64, 3), "HWC"),
        ((8, 84, 4), "HWC"),
    ],
)
def test_documented_examples(shape, order):
    frame = np.zeros(shape, np.uint8)
    if order is None:
        with pytest.raises(LayoutError, match="ambiguous"):
            detect(frame)
    else:
        assert detect(frame).order == order


def test_batched_grayscale_needs_the_hw_hint():
    frames = torch.arange(5 * 6 * 7, dtype=torch.uint8).reshape(5, 6, 7)
    with pytest.raises(LayoutError, match=r"\(5, 6, 7\).*layout='HW'"):
        detect(frames)
    layout = detect(frames, hint="HW")
    assert layout == Layout((5,), "HW", 1, 6, 7, "uint8", 1)
    out = normalize(frames, layout)
    assert out.shape == (5, 3, 6, 7)
    assert torch.equal(out[:, 2], frames)


def test_hints_are_checked():
    with pytest.raises(LayoutError, match=r"\(8, 8, 5\).*5 channels"):
        detect(np.zeros((8, 8, 5), np.uint8), hint="HWC")
    with pytest.raises(LayoutError, match="is not a layout: pass one of"):
        detect(np.zeros((8, 8, 3), np.uint8), hint="WHC")
    given_layout = Layout((), "HWC", 3, 8, 8, "uint8", 1)
    assert detect(np.zeros((8, 8, 3), np.uint8), hint=given_layout) is given_layout
    with pytest.raises(LayoutError, match=r"expected shape \(8, 8, 3\).*got shape \(8, 9, 3\)"):
        detect(np.zeros((8, 9, 3), np.uint8), hint=given_layout)


# --- values -----------------------------------------------------------------------------


def test_float_scale_is_decided_on_the_first_frame():
    bright = torch.full((8, 8, 3), 200.0)
    layout = detect(bright)
    assert layout.scale == 1
    dark = torch.full((8, 8, 3), 0.6)  # looks like [0,1], but the stream is [0,255]
    assert normalize(dark, layout).unique().tolist() == [1]

    unit = detect(torch.full((8, 8, 3), 0.5))
    assert unit.scale == 255
    assert normalize(torch.full((8, 8, 3), 0.5), unit).unique().tolist() == [128]
    assert normalize(torch.full((8, 8, 3), 3.0), unit).unique().tolist() == [255]  # clipped


def test_nonfinite_values_become_zero_or_are_clipped():
    frame = torch.full((8, 8), 0.5)
    frame[0, 0], frame[0, 1], frame[0, 2] = float("nan"), float("inf"), float("-inf")
    layout = detect(frame)
    assert layout.scale == 255  # non-finite values do not decide the scale
    out = normalize(frame, layout)
    assert out[:, 0, :3].tolist() == [[0, 255, 0]] * 3
    assert (out[:, 1:] == 128).all()
    assert out_of_range(frame, layout) == (3, 0)
    assert out_of_range(frame.numpy(), layout) == (3, 0)
    gray = torch.zeros(8, 8, dtype=torch.uint8)
    assert out_of_range(gray, detect(gray)) == (0, 0)
    frame[1, 1], frame[1, 2] = -0.5, 2.0  # finite, but outside [0, 1]: clipped
    assert out_of_range(frame, layout) == (3, 2)


def test_bool_frames_are_black_and_white():
    mask = torch.zeros(8, 9, dtype=torch.bool)
    mask[2:4, 3] = True
    layout = detect(mask)
    assert (layout.dtype, layout.scale) == ("bool", 255)
    assert torch.equal(normalize(mask, layout)[1], mask.to(torch.uint8) * 255)


def test_integer_frames_must_be_in_0_255():
    frame = torch.full((8, 8, 3), 256, dtype=torch.int32)
    with pytest.raises(LayoutError, match=r"\(8, 8, 3\).*int32.*\[256, 256\].*clip"):
        normalize(frame, detect(frame))
    frame = torch.full((8, 8, 3), -1, dtype=torch.int64)
    with pytest.raises(LayoutError, match=r"\[-1, -1\]"):
        normalize(frame, detect(frame))


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((8, 8, 3), np.complex64),
        torch.zeros(8, 8, 3, dtype=torch.complex64),
        np.zeros((8, 8, 3), object),
        np.zeros((8, 8, 3), "U1"),
    ],
)
def test_unsupported_dtypes_are_named(frame):
    with pytest.raises(LayoutError, match=r"\(8, 8, 3\).*convert"):
        detect(frame)


def test_rgba_drops_alpha_or_composites_over_a_background():
    rgba = torch.zeros(8, 8, 4, dtype=torch.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 3] = 200, 100, 64
    layout = detect(rgba)
    assert layout.channels == 4
    assert normalize(rgba, layout)[:, 0, 0].tolist() == [200, 100, 0]
    alpha = 64 / 255
    expected = [round(v * alpha + 255 * (1 - alpha)) for v in (200, 100, 0)]
    assert normalize(rgba, layout, background=(255, 255, 255))[:, 0, 0].tolist() == expected


def test_normalize_returns_a_fresh_copy():
    chw = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)  # already canonical
    layout = detect(chw)
    out = normalize(chw, layout)
    assert torch.equal(out, chw)
    chw.zero_()
    assert out.any()
    array = np.full((8, 8, 3), 7, np.uint8)
    out = normalize(array, detect(array))
    array[:] = 0
    assert (out == 7).all()


def test_normalize_names_both_shapes_when_a_frame_does_not_fit():
    layout = detect(torch.zeros(8, 8, 3, dtype=torch.uint8))
    with pytest.raises(LayoutError, match=r"expected shape \(8, 8, 3\).*got shape \(3, 8, 8\)"):
        normalize(torch.zeros(3, 8, 8, dtype=torch.uint8), layout)
    with pytest.raises(LayoutError, match=r"dtype uint8.*dtype float32"):
        normalize(torch.zeros(8, 8, 3), layout)


def test_as_tensor_reads_every_container():
    image = np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 8, 8, 3)
    expected = torch.from_numpy(image)
    readable = [
        image,
        torch.from_numpy(image),
        jnp.asarray(image),
        [image[0], image[1]],
        (torch.from_numpy(image[0]), jnp.asarray(image[1])),
        NonTensorStack(NonTensorData(image[0]), NonTensorData(image[1])),
        NonTensorData(image),
    ]
    for x in readable:
        assert torch.equal(as_tensor(x), expected), type(x)
    with pytest.raises(LayoutError, match="different shapes"):
        as_tensor([image[0], image[0, :4]])
    with pytest.raises(LayoutError, match="empty list"):
        as_tensor([])
    with pytest.raises(LayoutError, match="cannot read a frame of type object"):
        as_tensor(object())


def test_jax_arrays_are_read_in_place_not_through_python_lists():
    array = jnp.arange(8 * 8 * 3, dtype=jnp.uint8).reshape(8, 8, 3)
    tensor = as_tensor(array)
    assert tensor.data_ptr() == np.asarray(array).__array_interface__["data"][0]  # dlpack view
    half = jnp.full((8, 8, 3), 0.5, dtype=jnp.bfloat16)  # a dtype numpy does not have
    assert normalize(half, detect(half)).unique().tolist() == [128]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_frames_are_copied_to_cpu():
    frame = torch.full((8, 8, 3), 0.5, device="cuda")
    out = normalize(frame, detect(frame))
    assert out.device.type == "cpu" and (out == 128).all()


def test_layout_validates_its_fields():
    with pytest.raises(LayoutError, match="order"):
        Layout((), "WHC", 3, 8, 8, "uint8", 1)
    with pytest.raises(LayoutError, match="channels"):
        Layout((), "HW", 3, 8, 8, "uint8", 1)
    with pytest.raises(LayoutError, match="dtype"):
        Layout((), "HWC", 3, 8, 8, "complex64", 1)
    with pytest.raises(LayoutError, match="scale"):
        Layout((), "HWC", 3, 8, 8, "uint8", 2)
    with pytest.raises(LayoutError, match="scale must be 255 for dtype bool"):
        Layout((), "HWC", 3, 8, 8, "bool", 1)
    with pytest.raises(LayoutError, match="scale must be 1 for dtype int16"):
        Layout((), "HWC", 3, 8, 8, "int16", 255)
    layout = Layout([2], "CHW", 4, 5, 6, "float32", 255)
    assert layout.batch_shape == (2,)
    assert (layout.shape, layout.output_shape) == ((2, 4, 5, 6), (2, 3, 5, 6))
    assert pickle.loads(pickle.dumps(layout)) == layout


# --- frames(): the layout is decided once per stream -----------------------------------


def pixels_td(frame) -> TensorDict:
    batch = tuple(frame.shape[:-3]) if isinstance(frame, torch.Tensor) and frame.dim() > 3 else ()
    return TensorDict({"pixels": frame}, batch_size=batch)


@given(
    first=fst.layouts(max_side=6),
    other=fst.layouts(max_side=6, detectable=False),
    n=st.integers(1, 3),
    data=st.data(),
)
def test_a_frame_of_another_layout_raises_and_leaves_the_state_equal(first, other, n, data):
    assume(other.shape != first.shape or other.dtype != first.dtype)
    rec = funrec.frames("pixels")
    steps = [TensorDict({"pixels": data.draw(fst.images_for(first))}) for _ in range(n)]
    state = funrec.fold(rec, steps)
    assert state.layout == first
    before = pickle.loads(pickle.dumps(state))
    bad = data.draw(fst.images_for(other), label="bad frame")
    with pytest.raises(LayoutError) as err:
        rec.step(state, TensorDict({"pixels": bad}))
    message = str(err.value)
    assert "'pixels'" in message
    assert f"expected shape {first.shape}" in message and f"got shape {other.shape}" in message
    assert state == before
    state = rec.step(state, steps[0])  # the stream goes on
    assert funrec.counts(state).recorded == n + 1
    expected = torch.stack([normalize(td["pixels"], first) for td in [*steps, steps[0]]])
    assert torch.equal(funrec.video(state), expected)


@given(steps=fst.rollouts(max_steps=6))
def test_frames_records_every_rollout_exactly(steps):
    state = funrec.fold(funrec.frames("pixels"), steps)
    layout = detect(steps[0]["pixels"])
    assert state.layout == layout
    expected = torch.stack([normalize(td["pixels"], layout) for td in steps])
    assert torch.equal(funrec.video(state), expected)


def test_frames_takes_a_hint_or_a_layout_for_ambiguous_shapes():
    frame = torch.arange(3 * 8 * 3, dtype=torch.uint8).reshape(3, 8, 3)
    td = TensorDict({"pixels": frame})
    with pytest.raises(LayoutError, match=r"frames\('pixels'\).*ambiguous"):
        funrec.frames().step(funrec.frames().init(), td)
    as_hwc = funrec.fold(funrec.frames(layout="HWC"), [td])
    assert torch.equal(funrec.video(as_hwc)[0], frame.movedim(-1, 0))
    as_chw = funrec.fold(funrec.frames(layout=detect(frame, hint="CHW")), [td])
    assert torch.equal(funrec.video(as_chw)[0], frame)


def test_a_dark_frame_later_in_a_0_255_float_stream_is_not_rescaled():
    frames = [torch.full((8, 8, 3), 200.0), torch.full((8, 8, 3), 0.9), torch.zeros(8, 8, 3)]
    state = funrec.fold(funrec.frames(), [TensorDict({"pixels": f}) for f in frames])
    assert funrec.video(state)[:, 0, 0, 0].tolist() == [200, 1, 0]


def test_nonfinite_values_are_counted_in_the_state():
    frame = torch.full((8, 8, 3), 0.5)
    frame[0, 0] = float("nan")
    frame[1, 1, 1] = float("inf")
    state = funrec.fold(funrec.frames(), [TensorDict({"pixels": frame})] * 2)
    assert state.nonfinite == 8
    assert funrec.video(state)[:, :, 0, 0].unique().tolist() == [0]


@pytest.mark.filterwarnings("ignore")
def test_a_batched_render_nonTensorStack_is_recorded_per_env():
    """TorchRL: SerialEnv of envs that render into NonTensorData gives NonTensorStack pixels."""
    from torchrl.envs import GymEnv, SerialEnv
    from torchrl.record import PixelRenderTransform

    def make_env():
        env = GymEnv("CartPole-v1", render_mode="rgb_array")
        return env.append_transform(PixelRenderTransform(as_non_tensor=True))

    env = SerialEnv(2, make_env)
    try:
        env.set_seed(0)
        rollout = env.rollout(3)
    finally:
        env.close()
    steps = [rollout[:, t] for t in range(rollout.shape[1])]
    assert isinstance(steps[0].get("pixels"), NonTensorStack)
    state = funrec.fold(funrec.frames("pixels"), steps)
    video = funrec.video(state)
    assert video.shape == (3, 2, 3, 400, 600)
    for t, td in enumerate(steps):
        for env_index, array in enumerate(td.get("pixels").tolist()):
            assert torch.equal(video[t, env_index], torch.from_numpy(array).permute(2, 0, 1))
    assert not torch.equal(video[0, 0], video[0, 1])  # two envs, two different carts


@pytest.mark.filterwarnings("ignore")
def test_float_0_1_frames_from_torchrl_are_not_black():
    """TorchRL's VideoRecorder writes ToTensorImage's float [0,1] frames as all black."""
    from torchrl.envs import GymEnv, ToTensorImage, TransformedEnv

    env = TransformedEnv(
        GymEnv("CartPole-v1", from_pixels=True, pixels_only=False),
        ToTensorImage(in_keys=["pixels"], out_keys=["pixels_float"]),
    )
    try:
        env.set_seed(0)
        rollout = env.rollout(3)
    finally:
        env.close()
    assert rollout["pixels_float"].dtype == torch.float32
    rec = funrec.named(raw=funrec.frames("pixels"), scaled=funrec.frames("pixels_float"))
    state = funrec.fold(rec, rollout.unbind(0))
    scaled = funrec.video(state["scaled"])
    assert torch.equal(scaled, funrec.video(state["raw"]))
    assert scaled.float().mean() > 200  # CartPole's frames are mostly white


# --- frames() accepts every input kind of issue 3 ----------------------------------------

SEEDED = torch.Generator().manual_seed(3)
BASE = torch.randint(0, 256, (2, 8, 9, 3), dtype=torch.uint8, generator=SEEDED)
GRAY = BASE[..., 0]
RGBA = torch.cat([BASE, torch.full((2, 8, 9, 1), 9, dtype=torch.uint8)], dim=-1)


def non_tensor(value) -> TensorDict:
    td = TensorDict()
    td.set_non_tensor("pixels", value)
    return td


# name: (TensorDict holding the frame, layout hint, the uint8 [*batch, 3, H, W] expected)
INPUT_KINDS = {
    "render() HWC numpy": (TensorDict({"pixels": BASE[0].numpy()}), None, canonical(BASE[0])),
    "ToTensorImage CHW float [0,1]": (
        TensorDict({"pixels": BASE[0].movedim(-1, 0) / 255}), None, canonical(BASE[0])
    ),
    "HWC float [0,255]": (TensorDict({"pixels": BASE[0].double()}), None, canonical(BASE[0])),
    "HW grayscale": (TensorDict({"pixels": GRAY[0]}), None, GRAY[0].expand(3, 8, 9)),
    "[1,H,W] grayscale float": (
        TensorDict({"pixels": GRAY[:1] / 255.0}), None, GRAY[0].expand(3, 8, 9)
    ),
    "batched HWC": (TensorDict({"pixels": BASE}, [2]), None, canonical(BASE)),
    "batched grayscale": (TensorDict({"pixels": GRAY}, [2]), "HW", canonical(GRAY[..., None])),
    "RGBA": (TensorDict({"pixels": RGBA[0]}), None, canonical(BASE[0])),
    "bool mask": (
        TensorDict({"pixels": GRAY[0] > 127}), None, ((GRAY[0] > 127) * 255).expand(3, 8, 9)
    ),
    "int16": (TensorDict({"pixels": BASE[0].to(torch.int16)}), None, canonical(BASE[0])),
    "channels-last strides": (
        TensorDict(
            {"pixels": BASE.movedim(-1, 1).contiguous(memory_format=torch.channels_last)}, [2]
        ),
        None,
        canonical(BASE),
    ),
    "jax array": (non_tensor(jnp.asarray(BASE[0].numpy())), None, canonical(BASE[0])),
    "list of arrays": (non_tensor([BASE[0].numpy(), BASE[1].numpy()]), None, canonical(BASE)),
    "NonTensorStack": (
        TensorDict(
            {"pixels": NonTensorStack(*(NonTensorData(image.numpy()) for image in BASE))}, [2]
        ),
        None,
        canonical(BASE),
    ),
}


@pytest.mark.parametrize("kind", sorted(INPUT_KINDS))
def test_frames_accepts_every_input_kind(kind):
    td, hint, expected = INPUT_KINDS[kind]
    state = funrec.fold(funrec.frames("pixels", layout=hint), [td, td])
    video = funrec.video(state)
    assert video.dtype == torch.uint8
    assert torch.equal(video, torch.stack([expected, expected]))
