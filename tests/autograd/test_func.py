"""xpgrad.func: grad, value_and_grad, vjp, jvp, jacobian, hessian, hvp.

Random functions are small programs over sin, tanh, exp, mul, add and matmul applied to two
float64 inputs (shapes incl. 0-d and size-1); each transform is checked against central finite
differences and against torch.func / torch.autograd.functional on the same program.
"""
import numpy as np
import pytest
import torch
import torch.func as tf
import xpgrad as xg
from hypothesis import given
from hypothesis import strategies as st
from xpgrad import autograd as ag
from xpgrad import func

# torch.func's first use emits a torch.jit deprecation warning from inside torch
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

SHAPES = [(), (1,), (3,), (1, 1), (2, 3)]
STEPS = ["sin", "tanh", "exp", "mul", "add", "mm"]


def run(prog, M, a, b):
    """The program ``prog`` on inputs a, b, in namespace M (xpgrad.autograd or torch)."""
    h = a
    for op in prog:
        if op == "sin":
            h = M.sin(h)
        elif op == "tanh":
            h = M.tanh(h)
        elif op == "exp":
            h = M.exp(h * 0.3)
        elif op == "mul":
            h = h * b
        elif op == "add":
            h = h + b
        elif op == "mm" and len(h.shape) == 2:
            h = (h @ b.T) @ b * 0.5
    return h


def scalar(prog, M):
    def f(a, b):
        h = run(prog, M, a, b)
        return (h * h).sum() + M.sin(h).sum()
    return f


def vector(prog, M):
    def f(a, b):
        return run(prog, M, a, b) * a
    return f


@st.composite
def cases(draw):
    shape = draw(st.sampled_from(SHAPES))
    prog = draw(st.lists(st.sampled_from(STEPS), min_size=0, max_size=4))
    n = int(np.prod(shape))
    vals = st.lists(st.floats(-1.5, 1.5), min_size=n, max_size=n)
    a = np.asarray(draw(vals), dtype=np.float64).reshape(shape)
    b = np.asarray(draw(vals), dtype=np.float64).reshape(shape)
    v = np.asarray(draw(vals), dtype=np.float64).reshape(shape)
    return prog, a, b, v


def X(a):
    return ag.tensor(a, dtype=ag.float64)


def T(a):
    return torch.tensor(a, dtype=torch.float64)


def close(actual, expected, rtol=1e-7, atol=1e-9):
    actual = actual.numpy() if isinstance(actual, ag.Tensor) else actual
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    expected = expected.numpy() if isinstance(expected, ag.Tensor) else expected
    assert np.shape(actual) == np.shape(expected)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def fd_jacobian(f, args, k, eps=1e-6):
    """Central-difference Jacobian of the NumPy-valued f w.r.t. args[k]: out.shape + arg.shape."""
    args = [np.array(a, dtype=np.float64) for a in args]
    out_shape = np.shape(f(*args))
    x = args[k]
    cols = []
    for i in range(x.size):
        plus = [a.copy() for a in args]
        minus = [a.copy() for a in args]
        plus[k].reshape(-1)[i] += eps
        minus[k].reshape(-1)[i] -= eps
        cols.append((np.asarray(f(*plus)) - np.asarray(f(*minus))) / (2 * eps))
    if not cols:
        return np.zeros(out_shape + x.shape)
    return np.moveaxis(np.stack(cols), 0, -1).reshape(out_shape + x.shape)


def np_fn(f):
    """f on NumPy arrays (through xpgrad, no graph)."""
    def g(*arrays):
        with ag.no_grad():
            return f(*[X(a) for a in arrays]).numpy()
    return g


# -- grad / value_and_grad ----------------------------------------------------------------


@given(cases(), st.sampled_from([0, 1, (0, 1), (1, 0), -1]))
def test_grad_matches_torch_and_finite_differences(case, argnums):
    prog, a, b, _ = case
    f = scalar(prog, ag)
    g = func.grad(f, argnums=argnums)(X(a), X(b))
    gt = tf.grad(scalar(prog, torch), argnums=argnums)(T(a), T(b))
    if isinstance(argnums, int):
        close(g, gt)
        close(g, fd_jacobian(np_fn(f), (a, b), argnums % 2), rtol=1e-5, atol=1e-6)
    else:
        assert isinstance(g, tuple) and len(g) == 2
        for gi, gti, k in zip(g, gt, argnums):
            close(gi, gti)
            close(gi, fd_jacobian(np_fn(f), (a, b), k), rtol=1e-5, atol=1e-6)
    for gi in g if isinstance(g, tuple) else (g,):
        assert not gi.requires_grad and gi.grad_fn is None


@given(cases())
def test_value_and_grad(case):
    prog, a, b, _ = case
    f = scalar(prog, ag)
    value, (ga, gb) = func.value_and_grad(f, argnums=(0, 1))(X(a), X(b))
    gt, vt = tf.grad_and_value(scalar(prog, torch), argnums=(0, 1))(T(a), T(b))
    close(value, vt)
    close(ga, gt[0])
    close(gb, gt[1])
    assert not value.requires_grad


@given(cases(), st.sampled_from([0, 1, (0, 1)]))
def test_grad_of_grad_matches_torch(case, argnums):
    """d/d(a, b) of <grad_a f(a, b), v>, and of the gradient itself w.r.t. ``argnums``."""
    prog, a, b, v = case
    vx, vt = X(v), T(v)

    def inner_x(a_, b_):
        return (func.grad(scalar(prog, ag))(a_, b_) * vx).sum()

    def inner_t(a_, b_):
        return (tf.grad(scalar(prog, torch))(a_, b_) * vt).sum()

    g2 = func.grad(inner_x, argnums=argnums)(X(a), X(b))
    g2t = tf.grad(inner_t, argnums=argnums)(T(a), T(b))
    if isinstance(argnums, int):
        g2, g2t = (g2,), (g2t,)
    for x_, t_ in zip(g2, g2t):
        close(x_, t_, rtol=1e-6, atol=1e-8)
    # and against finite differences of the first gradient
    k = argnums if isinstance(argnums, int) else 0
    close(g2[0], fd_jacobian(np_fn(inner_x), (a, b), k), rtol=1e-5, atol=1e-6)


def test_grad_of_grad_of_grad_scalar():
    x = X(np.array(0.7))
    d3 = func.grad(func.grad(func.grad(lambda t: ag.sin(t) * t)))(x)
    xt = T(np.array(0.7))
    close(d3, tf.grad(tf.grad(tf.grad(lambda t: torch.sin(t) * t)))(xt))


# -- jacobian / hessian -------------------------------------------------------------------


@given(cases(), st.sampled_from([0, 1, (0, 1)]))
def test_jacobian_matches_jacrev_and_finite_differences(case, argnums):
    prog, a, b, _ = case
    f = vector(prog, ag)
    J = func.jacobian(f, argnums=argnums)(X(a), X(b))
    Jt = tf.jacrev(vector(prog, torch), argnums=argnums)(T(a), T(b))
    if isinstance(argnums, int):
        J, Jt, ks = (J,), (Jt,), (argnums,)
    else:
        ks = argnums
    for Ji, Jti, k in zip(J, Jt, ks):
        assert Ji.shape == a.shape + a.shape
        close(Ji, Jti)
        close(Ji, fd_jacobian(np_fn(f), (a, b), k), rtol=1e-5, atol=1e-6)


@given(cases(), st.sampled_from([0, (0, 1)]))
def test_hessian_matches_torch(case, argnums):
    prog, a, b, _ = case
    f = scalar(prog, ag)
    H = func.hessian(f, argnums=argnums)(X(a), X(b))
    Ht = tf.hessian(scalar(prog, torch), argnums=argnums)(T(a), T(b))
    if isinstance(argnums, int):
        assert H.shape == a.shape + a.shape
        close(H, Ht, rtol=1e-6, atol=1e-8)
        close(H, func.jacobian(func.grad(f))(X(a), X(b)), rtol=1e-10, atol=1e-12)
        close(H, fd_jacobian(np_fn(func.grad(f)), (a, b), 0), rtol=1e-5, atol=1e-6)
    else:
        for i in range(2):
            for j in range(2):
                close(H[i][j], Ht[i][j], rtol=1e-6, atol=1e-8)


def test_jacobian_of_tuple_output_and_shapes():
    a = X(np.arange(6.0).reshape(2, 3) / 10)
    J = func.jacobian(lambda x: (x.sum(), ag.sin(x)[0]))(a)
    Jt = tf.jacrev(lambda x: (x.sum(), torch.sin(x)[0]))(T(a.numpy()))
    assert isinstance(J, tuple) and J[0].shape == (2, 3) and J[1].shape == (3, 2, 3)
    close(J[0], Jt[0])
    close(J[1], Jt[1])
    # empty input / output
    e = X(np.zeros((0, 2)))
    assert func.jacobian(lambda x: x * 2.0)(e).shape == (0, 2, 0, 2)
    assert func.jacobian(lambda x: x.sum())(e).shape == (0, 2)


# -- vjp / jvp / hvp ----------------------------------------------------------------------


@given(cases())
def test_vjp_matches_torch(case):
    prog, a, b, v = case
    out, vjp_fn = func.vjp(vector(prog, ag), X(a), X(b))
    outt, vjp_t = tf.vjp(vector(prog, torch), T(a), T(b))
    close(out, outt)
    assert not out.requires_grad
    ga, gb = vjp_fn(X(v))
    gat, gbt = vjp_t(T(v))
    close(ga, gat)
    close(gb, gbt)
    ga2, _ = vjp_fn(X(v) * 2.0)  # callable again
    close(ga2, gat * 2)


@given(cases())
def test_jvp_matches_torch_and_finite_differences(case):
    prog, a, b, v = case
    f = vector(prog, ag)
    out, jv = func.jvp(f, (X(a), X(b)), (X(v), X(v * 0.5)))
    outt, jvt = tf.jvp(vector(prog, torch), (T(a), T(b)), (T(v), T(v * 0.5)))
    close(out, outt)
    close(jv, jvt)
    F = np_fn(f)
    eps = 1e-6
    fd = (F(a + eps * v, b + eps * v * 0.5) - F(a - eps * v, b - eps * v * 0.5)) / (2 * eps)
    close(jv, fd, rtol=1e-5, atol=1e-6)


@given(cases())
def test_hvp_matches_torch(case):
    prog, a, b, v = case
    f = scalar(prog, ag)
    value, hv = func.hvp(f, (X(a), X(b)), (X(v), X(v)))
    vt, hvt = torch.autograd.functional.hvp(scalar(prog, torch), (T(a), T(b)), (T(v), T(v)))
    close(value, vt)
    close(hv[0], hvt[0], rtol=1e-6, atol=1e-8)
    close(hv[1], hvt[1], rtol=1e-6, atol=1e-8)
    # torch.func composition: forward over reverse
    _, hv_fr = tf.jvp(tf.grad(scalar(prog, torch), argnums=(0, 1)), (T(a), T(b)), (T(v), T(v)))
    close(hv[0], hv_fr[0], rtol=1e-6, atol=1e-8)
    # one Tensor in, one Tensor out
    value1, hv1 = func.hvp(lambda x: f(x, X(b)), X(a), X(v))
    assert isinstance(hv1, ag.Tensor)
    close(value1, vt)
    _, hv1t = torch.autograd.functional.hvp(lambda x: scalar(prog, torch)(x, T(b)), T(a), T(v))
    close(hv1, hv1t, rtol=1e-6, atol=1e-8)


def test_jvp_with_tuple_output_and_aux():
    x = X(np.array([0.3, -0.2]))
    out, jv, aux = func.jvp(lambda t: ((ag.sin(t), t * t), t.sum()), (x,), (ag.ones_like(x),), has_aux=True)
    assert isinstance(out, tuple) and isinstance(jv, tuple)
    close(jv[0], np.cos(x.numpy()))
    close(jv[1], 2 * x.numpy())
    close(aux, x.numpy().sum())


# -- composition with an outer graph -------------------------------------------------------


def test_closed_over_tensor_stays_connected_to_outer_graph():
    w = ag.tensor([0.5, -1.0, 2.0], dtype=ag.float64, requires_grad=True)
    x = X(np.array([0.1, 0.2, 0.3]))
    g = func.grad(lambda t: (ag.sin(w * t) * t).sum())(x)
    assert g.requires_grad
    (dw,) = ag.grad(g.sum(), w)
    wt = torch.tensor(w.numpy(), requires_grad=True)
    gt = tf.grad(lambda t: (torch.sin(wt * t) * t).sum())(T(x.numpy()))
    (dwt,) = torch.autograd.grad(gt.sum(), wt)
    close(dw, dwt)
    assert x.grad is None and w.grad is None and not x.requires_grad


def test_argument_that_requires_grad_stays_connected_and_untouched():
    x = ag.tensor([0.4, -0.7], dtype=ag.float64, requires_grad=True)
    g = func.grad(lambda t: (t ** 3).sum())(x)  # 3 x^2
    assert g.requires_grad and x.grad is None and x.requires_grad and x.is_leaf
    (d,) = ag.grad(g.sum(), x)
    close(d, 6 * x.numpy())
    # backward() from the outer graph reaches the user's leaf only
    H = func.hessian(lambda t: (t ** 3).sum())(x)
    H.sum().backward()
    close(x.grad, np.full(2, 6.0))


def test_no_perturbation_confusion():
    # d/dx [x * d/dy (x * y)] = d/dx x^2 = 2x
    x0 = X(np.array(1.5))
    f = lambda x: x * func.grad(lambda y: x * y)(X(np.array(3.0)))
    close(func.grad(f)(x0), 3.0)
    # inner argument is the outer argument itself: d/dx [d/dy (x*y) at y=x] = 1
    g = lambda x: func.grad(lambda y: x * y)(x)
    close(func.grad(g)(x0), 1.0)


def test_under_no_grad_results_are_detached():
    w = ag.tensor([0.5, 2.0], dtype=ag.float64, requires_grad=True)
    x = X(np.array([1.0, 2.0]))
    with ag.no_grad():
        g = func.grad(lambda t: (w * t * t).sum())(x)
        out, jv = func.jvp(lambda t: w * t, (x,), (x,))
    assert not g.requires_grad and not jv.requires_grad and not out.requires_grad
    close(g, 2 * w.numpy() * x.numpy())


def test_inputs_not_mutated():
    x = ag.tensor([0.1, 0.2], dtype=ag.float64)
    y = ag.tensor([0.3, 0.4], dtype=ag.float64, requires_grad=True)
    before = x.numpy().copy()
    func.hessian(lambda a, b: (a * b * a).sum(), argnums=(0, 1))(x, y)
    func.jvp(lambda a, b: a * b, (x, y), (x, y))
    func.vjp(lambda a, b: a * b, x, y)[1](x)
    func.hvp(lambda a, b: (a * b * a).sum(), (x, y), (x, y))
    assert not x.requires_grad and x.grad is None and y.requires_grad and y.grad is None
    np.testing.assert_array_equal(x.numpy(), before)


def test_has_aux_and_unused_arguments():
    x = X(np.array([1.0, 2.0]))
    g, aux = func.grad(lambda t: ((t * t).sum(), {"t": t * 2.0, "n": 3}), has_aux=True)(x)
    close(g, 2 * x.numpy())
    assert aux["n"] == 3 and not aux["t"].requires_grad
    close(aux["t"], 2 * x.numpy())
    (value, aux2), g2 = func.value_and_grad(lambda t: ((t * t).sum(), t), has_aux=True)(x)
    close(value, 5.0)
    close(aux2, x.numpy())
    close(g2, 2 * x.numpy())
    # an argument f does not use, and a constant f: zero gradients of the argument's shape
    g0, g1 = func.grad(lambda a, b: a.sum(), argnums=(0, 1))(x, X(np.ones((2, 2))))
    close(g0, np.ones(2))
    close(g1, np.zeros((2, 2)))
    close(func.grad(lambda t: ag.tensor(1.0, dtype=ag.float64))(x), np.zeros(2))


def test_numpy_and_python_float_arguments():
    g = func.grad(lambda t: t * t * t)(2.0)
    assert g.dtype == ag.float64
    close(g, 12.0)
    close(func.grad(lambda t: (t * t).sum())(np.array([1.0, 3.0])), [2.0, 6.0])
    assert func.grad(lambda t: (t * t).sum())(np.array([1.0], dtype=np.float32)).dtype == ag.float32
    # a non-differentiated argument is passed as given
    assert func.grad(lambda t, n: (t * n).sum())(np.array([1.0]), 3).numpy().tolist() == [3.0]


def test_import_paths():
    from xpgrad import func as f2

    assert f2 is func is xg.func is ag.func
    assert xg.func.grad is func.grad and "func" in xg.__all__


# -- errors -------------------------------------------------------------------------------


def test_error_messages():
    x = X(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"scalar \(0-d\).*shape \(2,\).*jacobian or vjp"):
        func.grad(lambda t: t * 2.0)(x)
    with pytest.raises(ValueError, match=r"scalar \(0-d\).*shape \(1,\)"):
        func.grad(lambda t: t.sum().reshape(1))(x)
    with pytest.raises(ValueError, match="argnums 2 is out of range for a function called with 2 positional arguments"):
        func.grad(lambda a, b: a.sum(), argnums=2)(x, x)
    with pytest.raises(ValueError, match="argnums must be unique"):
        func.grad(lambda a, b: a.sum(), argnums=(0, 0))(x, x)
    with pytest.raises(TypeError, match="argnums must be an int or a non-empty tuple"):
        func.grad(lambda a: a.sum(), argnums=[0])(x)
    with pytest.raises(TypeError, match="f must return a Tensor, got a float"):
        func.grad(lambda t: 1.0)(x)
    with pytest.raises(TypeError, match="has_aux=True.*pair \\(output, aux\\), got a Tensor"):
        func.grad(lambda t: t.sum(), has_aux=True)(x)
    with pytest.raises(TypeError, match="pass has_aux=True"):
        func.grad(lambda t: (t.sum(), t))(x)
    with pytest.raises(TypeError, match="only floating-point arguments"):
        func.grad(lambda t: t.sum())(ag.tensor([1, 2]))
    with pytest.raises(TypeError, match="argument 0 is a str"):
        func.grad(lambda t: t)("1.0")
    with pytest.raises(TypeError, match="f must be callable"):
        func.grad(3)
    with pytest.raises(TypeError, match="jacobian: f must return a Tensor or a tuple of Tensors"):
        func.jacobian(lambda t: [t, 1.0])(x)
    with pytest.raises(ValueError, match="cotangent 0 has shape \\(3,\\), but output 0 of f has shape \\(2,\\)"):
        func.vjp(lambda t: t * 2.0, x)[1](X(np.ones(3)))
    with pytest.raises(ValueError, match="2 primals but 1 tangents"):
        func.jvp(lambda a, b: a * b, (x, x), (x,))
    with pytest.raises(ValueError, match="tangent 0 has shape \\(3,\\), but primal 0 has shape \\(2,\\)"):
        func.jvp(lambda a: a, (x,), (X(np.ones(3)),))
    with pytest.raises(ValueError, match="hvp: f must return a scalar"):
        func.hvp(lambda a: a * a, x, x)
    with pytest.raises(ValueError, match="vjp: needs at least one primal"):
        func.vjp(lambda: x)


@given(cases())
def test_transforms_compose_with_each_other(case):
    prog, a, b, v = case
    fx, ft = vector(prog, ag), vector(prog, torch)
    # grad of a jvp (tangent closed over), against torch.func
    g = func.grad(lambda x: func.jvp(lambda t: fx(t, X(b)), (x,), (X(v),))[1].sum())(X(a))
    gt = tf.grad(lambda x: tf.jvp(lambda t: ft(t, T(b)), (x,), (T(v),))[1].sum())(T(a))
    close(g, gt, rtol=1e-6, atol=1e-8)
    # jacobian of a vjp w.r.t. the cotangent is the transposed Jacobian
    _, vjp_fn = func.vjp(lambda t: fx(t, X(b)), X(a))
    Jt = func.jacobian(lambda c: vjp_fn(c)[0])(X(v))
    J = tf.jacrev(ft)(T(a), T(b))
    nd = a.ndim
    close(Jt, J.permute(*range(nd, 2 * nd), *range(nd)) if nd else J)
    # the tangent of a jvp stays differentiable: d/dv <jvp(f)(a; v), 1> = J^T 1
    dv = func.grad(lambda t: func.jvp(lambda x: fx(x, X(b)), (X(a),), (t,))[1].sum())(X(v))
    close(dv, J.reshape(a.size, a.size).sum(0).reshape(a.shape) if a.size else np.zeros(a.shape))
    # hvp agrees with the Hessian contracted with v
    H = func.hessian(scalar(prog, ag))(X(a), X(b)).numpy().reshape(a.size, a.size)
    _, hv = func.hvp(lambda x: scalar(prog, ag)(x, X(b)), X(a), X(v))
    close(hv, (H @ v.reshape(-1)).reshape(a.shape), rtol=1e-6, atol=1e-8)
