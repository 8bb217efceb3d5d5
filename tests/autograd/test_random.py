"""ag.Generator and the random functions: determinism with a seeded Generator, independence from
the default generators, every ``generator=`` entry point, randint/multinomial values and errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from xpgrad import autograd as ag
from xpgrad import nn
from xpgrad.nn import functional as F
from xpgrad.nn import init


def host(t) -> np.ndarray:
    return np.asarray(t.to("cpu").data)


def draws(make):
    """Two draws from fresh Generators seeded alike, and one from another seed."""
    return host(make(ag.Generator(123))), host(make(ag.Generator(123))), host(make(ag.Generator(124)))


ENTRY_POINTS = {
    "rand": lambda g: ag.rand(4, 5, generator=g),
    "randn": lambda g: ag.randn((4, 5), generator=g),
    "randint": lambda g: ag.randint(0, 1000, (4, 5), generator=g),
    "rand_like": lambda g: ag.rand_like(ag.zeros(4, 5), generator=g),
    "randn_like": lambda g: ag.randn_like(ag.zeros(4, 5, dtype=np.float64), generator=g),
    "multinomial": lambda g: ag.multinomial(ag.ones(3, 50), 10, generator=g),
    "multinomial_replacement": lambda g: ag.multinomial(ag.ones(50), 20, replacement=True, generator=g),
    "dropout": lambda g: F.dropout(ag.ones(6, 7), 0.5, generator=g),
    "uniform_": lambda g: init.uniform_(ag.empty(4, 5), -2.0, 2.0, generator=g),
    "normal_": lambda g: init.normal_(ag.empty(4, 5), 1.0, 3.0, generator=g),
    "xavier_uniform_": lambda g: init.xavier_uniform_(ag.empty(4, 5), generator=g),
    "xavier_normal_": lambda g: init.xavier_normal_(ag.empty(4, 5), generator=g),
    "kaiming_uniform_": lambda g: init.kaiming_uniform_(ag.empty(4, 5), a=0.1, generator=g),
    "kaiming_normal_": lambda g: init.kaiming_normal_(ag.empty(4, 5), generator=g),
    "dataloader": lambda g: ag.tensor(np.concatenate([
        host(b) for (b,) in nn.DataLoader((ag.arange(40),), batch_size=8, shuffle=True, generator=g)
    ])),
}


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_seeded_generator_is_deterministic_and_leaves_the_default_alone(name):
    make = ENTRY_POINTS[name]
    a, b, c = draws(make)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c), "another seed should give other draws"
    # The default generator is neither used nor advanced by a draw with generator=.
    ag.manual_seed(5)
    ref = host(ag.rand(8))
    ag.manual_seed(5)
    make(ag.Generator(0))
    np.testing.assert_array_equal(host(ag.rand(8)), ref)
    # And draws from a Generator do not depend on what the default generator did before.
    ag.manual_seed(99)
    ag.rand(3)
    np.testing.assert_array_equal(host(make(ag.Generator(123))), a)


def test_generator_draws_what_manual_seed_draws():
    # Generator(s) on a device starts where manual_seed(s) starts that device's default stream.
    ag.manual_seed(11)
    want = host(ag.randn(6))
    np.testing.assert_array_equal(host(ag.randn(6, generator=ag.Generator(11))), want)


def test_default_generator_results_unchanged_by_generator_support():
    # The default path draws exactly NumPy's default_rng(seed) stream (device 0).
    ag.manual_seed(3)
    got = host(ag.rand(5, dtype=np.float64))
    np.testing.assert_array_equal(got, np.random.default_rng(3).random(5))


def test_generator_stream_advances_and_manual_seed_restarts_it():
    g = ag.Generator(0)
    first = host(ag.rand(5, generator=g))
    second = host(ag.rand(5, generator=g))
    assert not np.array_equal(first, second)
    assert g.manual_seed(0) is g
    np.testing.assert_array_equal(host(ag.rand(5, generator=g)), first)
    assert g.initial_seed() == 0


def test_generator_seed_and_unseeded_generators():
    g = ag.Generator()
    s = g.seed()
    assert isinstance(s, int) and g.initial_seed() == s
    a = host(ag.rand(6, generator=g))
    np.testing.assert_array_equal(host(ag.rand(6, generator=ag.Generator(s))), a)
    assert not np.array_equal(host(ag.rand(6, generator=ag.Generator())), host(ag.rand(6, generator=ag.Generator())))


def test_one_generator_serves_each_device_from_its_own_stream():
    g = ag.Generator(4)
    cpu = host(ag.rand(5, device="cpu", generator=g))
    np.testing.assert_array_equal(cpu, host(ag.rand(5, device="cpu", generator=ag.Generator(4))))


def test_generator_errors():
    with pytest.raises(TypeError, match="ag.Generator"):
        ag.rand(3, generator=np.random.default_rng(0))
    with pytest.raises(TypeError, match="ag.Generator"):
        ag.rand(3, generator=torch.Generator())
    with pytest.raises(TypeError, match="first argument is the seed"):
        ag.Generator("cuda")
    with pytest.raises(ValueError, match="seed must be in"):
        ag.Generator(-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        ag.Generator(1.5)
    with pytest.raises(TypeError, match="ag.Generator"):
        nn.DataLoader((ag.arange(4),), shuffle=True, generator=3)
    with pytest.raises(ValueError, match="not both"):
        nn.DataLoader((ag.arange(4),), shuffle=True, seed=0, generator=ag.Generator(0))
    assert ag.Generator(device="cpu").initial_seed() >= 0


# -- randint ---------------------------------------------------------------------------------------------------

def test_randint_signatures_dtype_and_range():
    g = ag.Generator(0)
    a = ag.randint(10, (1000,), generator=g)
    assert a.dtype == np.int64 and a.shape == (1000,)
    assert host(a).min() == 0 and host(a).max() == 9
    b = ag.randint(-3, 4, size=(20, 50))
    assert host(b).min() == -3 and host(b).max() == 3
    c = ag.randint(0, 5, (7,), dtype=np.int32)
    assert c.dtype == np.int32
    assert ag.randint(3, 4, 5).shape == (5,)
    np.testing.assert_array_equal(host(ag.randint(5, 6, (4,))), [5, 5, 5, 5])


def test_randint_errors():
    with pytest.raises(TypeError, match="size is required"):
        ag.randint(10)
    with pytest.raises(ValueError, match="low < high"):
        ag.randint(5, 5, (3,))
    with pytest.raises(TypeError, match="integer dtype"):
        ag.randint(0, 5, (3,), dtype=np.float32)
    with pytest.raises(TypeError, match="low must be an int"):
        ag.randint(0.5, 5, (3,))


def test_rand_like_and_randn_like_follow_the_tensor():
    x = ag.zeros(3, 4, dtype=np.float64)
    assert ag.rand_like(x).dtype == np.float64 and ag.rand_like(x).shape == (3, 4)
    assert ag.randn_like(x, dtype=np.float32).dtype == np.float32
    assert ag.rand_like(x).device is x.device
    with pytest.raises(TypeError, match="floating-point"):
        ag.rand_like(ag.zeros(2, dtype=np.int64))
    assert ag.rand_like(x, requires_grad=True).requires_grad


# -- multinomial -------------------------------------------------------------------------------------------------

def test_multinomial_without_replacement_gives_distinct_nonzero_categories():
    p = ag.tensor(np.array([[0.0, 1.0, 2.0, 0.0, 3.0], [1.0, 1.0, 1.0, 1.0, 1.0]]))
    out = host(ag.multinomial(p, 3, generator=ag.Generator(0)))
    assert out.shape == (2, 3) and out.dtype == np.int64
    assert sorted(out[0]) == [1, 2, 4]
    assert len(set(out[1])) == 3
    one = ag.multinomial(ag.tensor(np.array([0.2, 0.0, 0.8])), 2)
    assert one.shape == (2,) and sorted(host(one)) == [0, 2]


def test_multinomial_frequencies_with_and_without_replacement():
    probs = np.array([0.1, 0.0, 0.6, 0.3])
    g = ag.Generator(1)
    out = host(ag.multinomial(ag.tensor(probs), 20000, replacement=True, generator=g))
    freq = np.bincount(out, minlength=4) / out.size
    np.testing.assert_allclose(freq, probs, atol=0.015)
    # Without replacement, the first draw follows probs.
    firsts = host(ag.multinomial(ag.tensor(np.tile(probs, (20000, 1))), 1, generator=g))[:, 0]
    np.testing.assert_allclose(np.bincount(firsts, minlength=4) / firsts.size, probs, atol=0.015)
    # torch agrees on the distribution (not on the stream).
    tfirst = torch.multinomial(torch.from_numpy(np.tile(probs, (20000, 1))), 1)[:, 0].numpy()
    np.testing.assert_allclose(np.bincount(tfirst, minlength=4) / tfirst.size, probs, atol=0.015)


def test_multinomial_unnormalised_rows():
    out = host(ag.multinomial(ag.tensor(np.array([[0.0, 5.0, 0.0]])), 4, replacement=True))
    np.testing.assert_array_equal(out, [[1, 1, 1, 1]])


def test_multinomial_errors():
    with pytest.raises(ValueError, match="without replacement"):
        ag.multinomial(ag.tensor(np.array([0.5, 0.0, 0.5])), 3)
    with pytest.raises(ValueError, match="non-negative"):
        ag.multinomial(ag.tensor(np.array([0.5, -0.1])), 1)
    with pytest.raises(ValueError, match="non-negative"):
        ag.multinomial(ag.tensor(np.array([0.5, np.nan])), 1)
    with pytest.raises(ValueError, match="positive sum"):
        ag.multinomial(ag.tensor(np.array([[1.0, 1.0], [0.0, 0.0]])), 1, replacement=True)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        ag.multinomial(ag.ones(2, 2, 2), 1)
    with pytest.raises(ValueError, match="positive int"):
        ag.multinomial(ag.ones(3), 0)
    with pytest.raises(TypeError, match="floating point"):
        ag.multinomial(ag.tensor(np.array([1, 2])), 1)


def test_dropout_generator_mask_is_reused_by_backward():
    x = ag.ones(50, requires_grad=True, dtype=np.float64)
    y = F.dropout(x, 0.3, generator=ag.Generator(2))
    y.sum().backward()
    np.testing.assert_array_equal(host(x.grad), host(y.detach()))
