"""Stimuli (:mod:`cortex_resnet.model.stimulus`): time courses, batches, channels, .npy files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cortex_resnet.errors import SpecError
from cortex_resnet.model.stimulus import Stimulus, make_stimulus


@pytest.mark.parametrize("text,t_ms,expected", [
    ("constant:amp=2", 0.0, 2.0),
    ("step:amp=2,onset_ms=10", 9.99, 0.0),
    ("step:amp=2,onset_ms=10", 10.0, 2.0),
    ("step:amp=2,onset_ms=10,offset_ms=20", 19.9, 2.0),
    ("step:amp=2,onset_ms=10,offset_ms=20", 20.0, 0.0),
    ("pulse:amp=3,onset_ms=5,width_ms=2", 6.5, 3.0),
    ("pulse:amp=3,onset_ms=5,width_ms=2", 7.0, 0.0),
    ("ramp:amp=4,onset_ms=10,offset_ms=30", 15.0, 1.0),
    ("ramp:amp=4,onset_ms=10,offset_ms=30", 40.0, 4.0),
    ("sinusoid:amp=2,freq_hz=10,baseline=1", 25.0, 1.0 + 2.0 * math.sin(2 * math.pi * 0.25)),
    ("sinusoid:amp=2,freq_hz=10,baseline=1,onset_ms=5", 4.0, 0.0),
])
def test_time_courses(text, t_ms, expected):
    u = make_stimulus(text, n_inputs=3)(t_ms)
    assert u.shape == (1, 3)
    torch.testing.assert_close(u, torch.full((1, 3), expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_amp_list_is_a_batch_and_channels_select_inputs():
    stim = make_stimulus("step:amp=[1,2,3],channels=[1]", n_inputs=3, dtype=torch.float32)
    u = stim(0.0)
    assert stim.batch == 3 and u.dtype == torch.float32
    expected = torch.tensor([[0, 1, 0], [0, 2, 0], [0, 3, 0]], dtype=torch.float32)
    torch.testing.assert_close(u, expected)


def test_channel_out_of_range():
    with pytest.raises(SpecError) as info:
        make_stimulus("step:amp=1,channels=[3]", n_inputs=3)
    assert info.value.field == "stimulus.channels"


@pytest.mark.parametrize("shape,batch", [((5, 2), 1), ((5, 4, 2), 4)])
def test_npy_zero_order_hold(tmp_path, shape, batch):
    arr = np.arange(np.prod(shape), dtype=float).reshape(shape)
    path = tmp_path / "u.npy"
    np.save(path, arr)
    stim = make_stimulus(f"npy:path={path},dt_ms=2", n_inputs=2)
    arr3 = arr if arr.ndim == 3 else arr[:, None, :]
    assert stim.batch == batch
    np.testing.assert_array_equal(stim(0.0).numpy(), arr3[0])
    np.testing.assert_array_equal(stim(3.9).numpy(), arr3[1])  # sample k holds on [2k, 2k + 2) ms
    np.testing.assert_array_equal(stim(4.0).numpy(), arr3[2])
    np.testing.assert_array_equal(stim(100.0).numpy(), arr3[-1])  # last value held


@pytest.mark.parametrize("content,needle", [
    (np.zeros((5, 3)), "shape"),              # wrong number of inputs
    (np.zeros(5), "shape"),                   # 1-D
    (np.full((2, 2), np.nan), "finite"),
])
def test_npy_bad_content(tmp_path, content, needle):
    path = tmp_path / "u.npy"
    np.save(path, content)
    with pytest.raises(SpecError) as info:
        make_stimulus(f"npy:path={path}", n_inputs=2)
    assert info.value.field == "stimulus.path"
    assert needle in str(info.value)


def test_npy_missing_or_pickled(tmp_path):
    with pytest.raises(SpecError):
        make_stimulus(f"npy:path={tmp_path / 'nope.npy'}", n_inputs=2)
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SpecError) as info:  # never unpickled: data only
        make_stimulus(f"npy:path={path}", n_inputs=2)
    assert info.value.field == "stimulus.path"


def test_from_array_matches_npy_file(tmp_path):
    arr = np.random.default_rng(0).standard_normal((4, 3, 2))
    np.save(tmp_path / "u.npy", arr)
    a = make_stimulus(f"npy:path={tmp_path / 'u.npy'},dt_ms=0.5", n_inputs=2)
    b = Stimulus.from_array(arr, dt_ms=0.5)
    for t in (0.0, 0.7, 1.2, 9.0):
        torch.testing.assert_close(a(t), b(t), rtol=0, atol=0)
