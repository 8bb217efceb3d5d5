"""scaled_dot_product_attention, MultiheadAttention and TransformerEncoderLayer against PyTorch (float64)."""
import math

import numpy as np
import pytest
from nn_testing import ag64, close, rng, th64

from xpgrad import autograd as ag
from xpgrad import nn
from xpgrad.autograd.testing import gradcheck, gradgradcheck
from xpgrad.nn import functional as F

torch = pytest.importorskip("torch")
tF = torch.nn.functional


def _mask_pair(mask):
    """The same mask for both sides: bool masks as constants, float masks as inputs with a gradient."""
    if mask is None:
        return None, None
    grad = mask.dtype != np.bool_
    return ag.tensor(mask, requires_grad=grad), torch.tensor(mask, requires_grad=grad)


def _sdpa_both(shapes, mask=None, seed=0, **kw):
    r = rng(seed)
    arrays = [r.standard_normal(s) for s in shapes]
    ours = [ag64(a, True) for a in arrays]
    theirs = [th64(torch, a, True) for a in arrays]
    m, tm = _mask_pair(mask)
    out = F.scaled_dot_product_attention(*ours, attn_mask=m, **kw)
    tout = tF.scaled_dot_product_attention(*theirs, attn_mask=tm, **kw)
    assert out.shape == tuple(tout.shape)
    close(out, tout)
    u = r.standard_normal(out.shape)
    (out * ag64(u)).sum().backward()
    (tout * th64(torch, u)).sum().backward()
    for a, t in zip(ours, theirs):
        close(a.grad, t.grad)
    if m is not None and m.requires_grad:
        close(m.grad, tm.grad)
    return out


QKV = [(2, 3, 4), (2, 5, 4), (2, 5, 6)]


def test_sdpa_no_mask():
    _sdpa_both(QKV)


def test_sdpa_four_dimensional_with_broadcast_batch():
    _sdpa_both([(2, 3, 4, 5), (1, 3, 6, 5), (2, 1, 6, 2)])


def test_sdpa_bool_mask_true_takes_part():
    mask = rng(1).random((3, 5)) > 0.4
    mask[:, 0] = True
    _sdpa_both(QKV, mask)


def test_sdpa_bool_mask_broadcast_per_batch():
    mask = rng(2).random((2, 1, 5)) > 0.3
    mask[..., 1] = True
    _sdpa_both(QKV, mask)


def test_sdpa_fully_masked_row_gives_zeros_like_torch():
    mask = np.ones((3, 5), dtype=bool)
    mask[1] = False
    out = _sdpa_both(QKV, mask)
    assert np.all(out.numpy()[:, 1] == 0.0)


def test_sdpa_float_mask_is_added_and_gets_a_gradient():
    _sdpa_both(QKV, rng(3).standard_normal((3, 5)))


def test_sdpa_float_mask_with_minus_inf():
    mask = np.zeros((2, 3, 5))
    mask[0, 1, 2:] = -np.inf
    _sdpa_both(QKV, mask)


@pytest.mark.parametrize("n_q,n_k", [(3, 5), (5, 3), (4, 4)])
def test_sdpa_causal(n_q, n_k):
    _sdpa_both([(2, n_q, 4), (2, n_k, 4), (2, n_k, 3)], is_causal=True)


@pytest.mark.parametrize("scale", [0.1, 1.0, 2.5])
def test_sdpa_scale(scale):
    _sdpa_both(QKV, rng(4).random((3, 5)) > 0.2, scale=scale)


def test_sdpa_is_one_node():
    q, k, v = (ag64(rng(5).standard_normal(s), True) for s in QKV)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert repr(out.grad_fn) == "<ScaledDotProductAttentionBackward>"


def test_sdpa_create_graph_gradient_matches_the_fast_path_and_differentiates_again():
    r = rng(6)
    arrays = [r.standard_normal(s) for s in QKV] + [r.standard_normal((3, 5))]
    q, k, v, m = (ag64(a, True) for a in arrays)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    fast = ag.grad((out * out).sum(), (q, k, v, m), retain_graph=True)
    slow = ag.grad((out * out).sum(), (q, k, v, m), create_graph=True)
    for a, b in zip(fast, slow):
        close(a, b)
    assert all(b.requires_grad for b in slow)
    # and against torch's second derivative of the same scalar
    tq, tk, tv, tm = (th64(torch, a, True) for a in arrays)
    tout = tF.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm)
    tslow = torch.autograd.grad((tout * tout).sum(), (tq, tk, tv, tm), create_graph=True)
    second = ag.grad(sum((g * g).sum() for g in slow), (q, k, v, m))
    tsecond = torch.autograd.grad(sum((g * g).sum() for g in tslow), (tq, tk, tv, tm))
    for a, b in zip(second, tsecond):
        close(a, b)


def test_sdpa_gradgradcheck_causal_and_bool_mask():
    r = rng(7)
    arrays = [ag64(r.standard_normal(s), True) for s in [(1, 3, 2), (1, 4, 2), (1, 4, 2)]]
    keep = ag.tensor(np.array([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 0, 1]], dtype=bool))
    assert gradgradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=keep), arrays)
    assert gradgradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), arrays)


def _seeded_sdpa(p):
    def fn(q, k, v):
        ag.manual_seed(99)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p)

    return fn


def test_sdpa_dropout_uses_the_device_generator_and_is_differentiable():
    r = rng(8)
    q, k, v = (ag64(r.standard_normal(s), True) for s in QKV)
    p = 0.4
    out = _seeded_sdpa(p)(q, k, v)
    ag.manual_seed(99)
    keep = ag.rand(2, 3, 5, dtype="float64").numpy() >= p
    s = q.numpy() @ k.numpy().swapaxes(-1, -2) / 2.0
    probs = np.exp(s - s.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    np.testing.assert_allclose(out.numpy(), (probs * keep / (1 - p)) @ v.numpy(), rtol=1e-12, atol=1e-12)
    assert gradcheck(_seeded_sdpa(p), [q, k, v])
    assert gradgradcheck(_seeded_sdpa(p), [q, k, v])
    a = F.scaled_dot_product_attention(q, k, v, dropout_p=p, generator=ag.Generator(3))
    b = F.scaled_dot_product_attention(q, k, v, dropout_p=p, generator=ag.Generator(3))
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_sdpa_in_place_change_after_forward_raises():
    q, k, v = (ag64(rng(9).standard_normal(s), True) for s in QKV)
    v2 = v * 1.0
    out = F.scaled_dot_product_attention(q, k, v2)
    with ag.no_grad():
        v2.mul_(2.0)
    with pytest.raises(RuntimeError, match="ScaledDotProductAttention"):
        out.sum().backward()


def test_sdpa_errors():
    q, k, v = (ag64(np.ones(s)) for s in QKV)
    mask = ag.tensor(np.ones((3, 5), dtype=bool))
    with pytest.raises(RuntimeError, match="is_causal"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=True)
    with pytest.raises(ValueError, match="last axis"):
        F.scaled_dot_product_attention(q, ag64(np.ones((2, 5, 3))), v)
    with pytest.raises(ValueError, match="same length"):
        F.scaled_dot_product_attention(q, k, ag64(np.ones((2, 4, 6))))
    with pytest.raises(ValueError, match="at least 2"):
        F.scaled_dot_product_attention(ag64(np.ones(4)), k, v)
    with pytest.raises(TypeError, match="same dtype"):
        F.scaled_dot_product_attention(q.astype("float32"), k, v)
    with pytest.raises(TypeError, match="attn_mask must be bool or floating"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=ag.tensor(np.ones((3, 5), dtype=np.int64)))
    with pytest.raises(ValueError, match="does not broadcast"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=ag.tensor(np.ones((3, 4), dtype=bool)))
    with pytest.raises(ValueError, match="dropout_p"):
        F.scaled_dot_product_attention(q, k, v, dropout_p=1.0)


# -- MultiheadAttention ----------------------------------------------------------------------------------------

def _load_from_torch(ours, theirs):
    ours.load_state_dict({name: ag.tensor(t.detach().numpy()) for name, t in theirs.state_dict().items()})


def _grads_match(ours, theirs):
    theirs_params = dict(theirs.named_parameters())
    assert [n for n, _ in ours.named_parameters()] == list(theirs_params)
    for name, p in ours.named_parameters():
        close(p.grad, theirs_params[name].grad)


def _mha_pair(embed_dim=8, num_heads=2, **kw):
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(embed_dim, num_heads, dtype=torch.float64, **kw)
    ours = nn.MultiheadAttention(embed_dim, num_heads, dtype="float64", **kw)
    _load_from_torch(ours, theirs)
    return ours, theirs


def _mha_both(ours, theirs, shapes, seed=0, self_attention=False, masks=None, **kw):
    r = rng(seed)
    arrays = [r.standard_normal(s) for s in shapes]
    xs = [ag64(a, True) for a in arrays]
    ts = [th64(torch, a, True) for a in arrays]
    if self_attention:
        xs, ts = xs * 3, ts * 3
    masks = masks or {}
    our_masks = {name: ag.tensor(m) for name, m in masks.items()}
    their_masks = {name: torch.tensor(m) for name, m in masks.items()}
    out, w = ours(*xs, **our_masks, **kw)
    tout, tw = theirs(*ts, **their_masks, **kw)
    assert out.shape == tuple(tout.shape)
    close(out, tout)
    if tw is None:
        assert w is None
    else:
        assert w.shape == tuple(tw.shape)
        close(w, tw)
    u = r.standard_normal(out.shape)
    loss, tloss = (out * ag64(u)).sum(), (tout * th64(torch, u)).sum()
    if tw is not None:
        uw = r.standard_normal(w.shape)
        loss, tloss = loss + (w * ag64(uw)).sum(), tloss + (tw * th64(torch, uw)).sum()
    loss.backward()
    tloss.backward()
    for a, t in zip(xs, ts):
        close(a.grad, t.grad)
    _grads_match(ours, theirs)


def test_mha_parameters_and_init_match_torch():
    ours = nn.MultiheadAttention(16, 4)
    theirs = torch.nn.MultiheadAttention(16, 4)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [
        (n, tuple(p.shape)) for n, p in theirs.named_parameters()
    ]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    bound = math.sqrt(6.0 / (16 + 48))
    w = ours.in_proj_weight.numpy()
    assert np.all(np.abs(w) <= bound) and w.std() > bound / 3
    assert np.all(ours.in_proj_bias.numpy() == 0) and np.all(ours.out_proj.bias.numpy() == 0)
    assert [n for n, _ in nn.MultiheadAttention(8, 2, bias=False).named_parameters()] == [
        n for n, _ in torch.nn.MultiheadAttention(8, 2, bias=False).named_parameters()
    ]


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights,average", [(True, True), (True, False), (False, True)])
def test_mha_matches_torch(batch_first, need_weights, average):
    ours, theirs = _mha_pair(batch_first=batch_first)
    q, kv = ((2, 3, 8), (2, 4, 8)) if batch_first else ((3, 2, 8), (4, 2, 8))
    _mha_both(ours, theirs, [q, kv, kv], need_weights=need_weights, average_attn_weights=average)


@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_self_attention_with_masks(need_weights):
    ours, theirs = _mha_pair()
    r = rng(11)
    pad = r.random((2, 4)) < 0.3
    pad[:, 0] = False
    masks = {"key_padding_mask": np.where(pad, -np.inf, 0.0), "attn_mask": r.standard_normal((4, 4))}
    _mha_both(ours, theirs, [(4, 2, 8)], self_attention=True, masks=masks, need_weights=need_weights)


def test_mha_bool_masks_true_is_masked_out():
    ours, theirs = _mha_pair(batch_first=True)
    r = rng(12)
    attn = r.random((4, 3, 5)) < 0.3  # (N * num_heads, L, S)
    attn[..., 0] = False
    pad = np.zeros((2, 5), dtype=bool)
    pad[1, 3:] = True
    for need in (True, False):
        _mha_both(ours, theirs, [(2, 3, 8), (2, 5, 8), (2, 5, 8)], masks={"attn_mask": attn, "key_padding_mask": pad},
                  need_weights=need)
        for p in ours.parameters():
            p.grad = None
        theirs.zero_grad()


def test_mha_causal_hint_with_its_mask():
    ours, theirs = _mha_pair()
    causal = ~np.tril(np.ones((3, 3), dtype=bool))
    _mha_both(ours, theirs, [(3, 2, 8)], self_attention=True, masks={"attn_mask": causal}, is_causal=True,
              need_weights=False)
    with pytest.raises(RuntimeError, match="attn_mask"):
        ours(*(ag64(np.ones((3, 2, 8))),) * 3, is_causal=True)


def test_mha_unbatched_and_no_bias():
    ours, theirs = _mha_pair(bias=False)
    _mha_both(ours, theirs, [(3, 8), (4, 8), (4, 8)], average_attn_weights=False)


def test_mha_errors():
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(10, 3)
    with pytest.raises(NotImplementedError, match="kdim"):
        nn.MultiheadAttention(8, 2, kdim=4)
    with pytest.raises(NotImplementedError, match="add_bias_kv"):
        nn.MultiheadAttention(8, 2, add_bias_kv=True)
    mha = nn.MultiheadAttention(8, 2)
    x = ag64(np.ones((3, 2, 8)))
    with pytest.raises(ValueError, match="embed_dim"):
        mha(ag64(np.ones((3, 2, 6))), x, x)
    with pytest.raises(ValueError, match="key_padding_mask"):
        mha(x, x, x, key_padding_mask=ag.tensor(np.zeros((3, 3), dtype=bool)))
    with pytest.raises(ValueError, match="attn_mask"):
        mha(x, x, x, attn_mask=ag.tensor(np.zeros((2, 3), dtype=bool)))


def test_mha_dropout_only_in_training():
    ours, _ = _mha_pair(dropout=0.5)
    x = ag64(rng(13).standard_normal((3, 2, 8)))
    ours.eval()
    a, _ = ours(x, x, x)
    b, _ = ours(x, x, x, need_weights=False)
    close(a, b)
    ours.train()
    ag.manual_seed(0)
    c, _ = ours(x, x, x)
    assert not np.allclose(c.numpy(), a.numpy())


# -- TransformerEncoderLayer ----------------------------------------------------------------------------------

@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_encoder_layer_matches_torch(norm_first, activation, batch_first):
    kw = {"dim_feedforward": 16, "dropout": 0.1, "activation": activation, "batch_first": batch_first,
          "norm_first": norm_first}
    torch.manual_seed(0)
    theirs = torch.nn.TransformerEncoderLayer(8, 2, dtype=torch.float64, **kw).eval()
    ours = nn.TransformerEncoderLayer(8, 2, dtype="float64", **kw).eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _load_from_torch(ours, theirs)
    r = rng(14)
    x = r.standard_normal((2, 4, 8) if batch_first else (4, 2, 8))
    pad = np.zeros((2, 4), dtype=bool)
    pad[1, 2:] = True
    xa, xt = ag64(x, True), th64(torch, x, True)
    out = ours(xa, src_key_padding_mask=ag.tensor(pad))
    tout = theirs(xt, src_key_padding_mask=torch.tensor(pad))
    close(out, tout)
    u = r.standard_normal(out.shape)
    (out * ag64(u)).sum().backward()
    (tout * th64(torch, u)).sum().backward()
    close(xa.grad, xt.grad)
    _grads_match(ours, theirs)


def test_encoder_layer_causal_mask_matches_torch():
    torch.manual_seed(1)
    theirs = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, dtype=torch.float64).eval()
    ours = nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, dtype="float64").eval()
    _load_from_torch(ours, theirs)
    x = rng(15).standard_normal((5, 2, 8))
    mask = torch.nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)
    out = ours(ag64(x), src_mask=ag.tensor(mask.numpy()), is_causal=True)
    with torch.no_grad():
        tout = theirs(th64(torch, x), src_mask=mask, is_causal=True)
    close(out, tout)


def test_encoder_layer_bad_activation():
    with pytest.raises(ValueError, match="activation"):
        nn.TransformerEncoderLayer(8, 2, activation="swish")
