"""The shuffled MNIST-1D control: one permutation of the 40 positions, the same for every example."""

from __future__ import annotations

import numpy as np
import pytest

from cortex_resnet.data.datasets import get_dataset
from cortex_resnet.errors import SpecError


def test_shuffle_permutes_positions_the_same_way_for_every_example():
    plain = get_dataset("mnist1d", params={"num_samples": 200})
    shuf = get_dataset("mnist1d", params={"num_samples": 200, "shuffle_seed": 0})
    perm = np.random.default_rng(0).permutation(40)
    assert not np.array_equal(perm, np.arange(40))
    np.testing.assert_array_equal(shuf.x_train, plain.x_train[:, :, perm])
    np.testing.assert_array_equal(shuf.x_test, plain.x_test[:, :, perm])
    np.testing.assert_array_equal(shuf.y_train, plain.y_train)
    assert "shuffled" in shuf.description and shuf.meta["shuffle_seed"] == 0
    other = get_dataset("mnist1d", params={"num_samples": 200, "shuffle_seed": 1})
    assert not np.array_equal(other.x_train, shuf.x_train)


@pytest.mark.parametrize("bad", [-2, 2**32, 1.5])
def test_bad_shuffle_seed_names_the_field(bad):
    with pytest.raises(SpecError) as err:
        get_dataset("mnist1d", params={"num_samples": 100, "shuffle_seed": bad})
    assert err.value.field == "data.params.shuffle_seed"
