import numpy as np
import pytest

from xpgrad import autograd as ag
from xpgrad import nn


def _data(n=10):
    x = ag.tensor(np.arange(n * 2, dtype=np.float32).reshape(n, 2))
    y = ag.tensor(np.arange(n))
    return x, y


def test_batches_cover_dataset_in_order_without_shuffle():
    x, y = _data(10)
    batches = list(nn.DataLoader((x, y), batch_size=4))
    assert [b[0].shape for b in batches] == [(4, 2), (4, 2), (2, 2)]
    assert np.concatenate([b[1].numpy() for b in batches]).tolist() == list(range(10))
    assert len(nn.DataLoader((x, y), batch_size=4)) == 3


def test_drop_last():
    x, y = _data(10)
    loader = nn.DataLoader((x, y), batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert [b[0].shape[0] for b in loader] == [4, 4]


def test_seeded_shuffle_is_reproducible_and_a_permutation():
    x, y = _data(20)
    first = [b[1].numpy() for b in nn.DataLoader((x, y), batch_size=6, shuffle=True, seed=3)]
    again = [b[1].numpy() for b in nn.DataLoader((x, y), batch_size=6, shuffle=True, seed=3)]
    assert all((a == b).all() for a, b in zip(first, again))
    order = np.concatenate(first)
    assert sorted(order.tolist()) == list(range(20))
    assert order.tolist() != list(range(20))


def test_each_epoch_draws_a_new_order_and_rows_stay_paired():
    x, y = _data(20)
    loader = nn.DataLoader((x, y), batch_size=20, shuffle=True, seed=1)
    (x1, y1), = list(loader)
    (x2, y2), = list(loader)
    assert y1.numpy().tolist() != y2.numpy().tolist()
    np.testing.assert_array_equal(x1.numpy()[:, 0], 2 * y1.numpy())


def test_unseeded_shuffle_follows_manual_seed():
    x, y = _data(30)
    ag.manual_seed(5)
    a = [b[1].numpy() for b in nn.DataLoader((x, y), batch_size=30, shuffle=True)]
    ag.manual_seed(5)
    b = [b[1].numpy() for b in nn.DataLoader((x, y), batch_size=30, shuffle=True)]
    assert a[0].tolist() == b[0].tolist()


def test_batches_stay_on_the_data_device_and_do_not_disable_grad():
    x, y = _data(8)
    for xb, yb in nn.DataLoader((x, y), batch_size=4, shuffle=True, seed=0):
        assert xb.device is x.device and yb.device is y.device
        assert ag.is_grad_enabled()


def test_bad_arguments_are_named():
    x, y = _data(8)
    with pytest.raises(ValueError, match="batch_size"):
        nn.DataLoader((x, y), batch_size=0)
    with pytest.raises(ValueError, match="first dimension"):
        nn.TensorDataset(x, ag.tensor(np.arange(5)))
    with pytest.raises(TypeError, match="TensorDataset"):
        nn.DataLoader(42)


def test_random_split_indices_partition():
    parts = nn.random_split_indices(10, [0.7, 0.3], seed=0)
    assert [len(p) for p in parts] == [7, 3]
    assert sorted(np.concatenate(parts).tolist()) == list(range(10))
