"""Every Cython kernel against its plain NumPy reference (float64, relative 1e-12)."""
import numpy as np
import numpy_reference as ref
import pytest
from conftest import ACTIVATIONS

import bpcore as bp
from bpcore import _dense, _flat, _losses

CODES = {name: code for name, (code, _) in bp.ACTIVATIONS.items()}
TIGHT = dict(rtol=1e-12, atol=1e-13)
EMPTY2 = np.empty((0, 0))
EMPTY1 = np.empty(0)


def close(actual, expected):
    np.testing.assert_allclose(actual, expected, **TIGHT)


# (rows, inputs, units): the loops special-case some widths (1, 2, 4, 8, 10, 16, 32,
# 64) and take a generic path for the others. The small shapes' products go to
# bpcore's own loops, the last two's to BLAS, on every CPU (checked below).
SHAPES = [(7, 5, 4), (6, 3, 5), (3, 2, 16), (5, 4, 1), (4, 3, 64), (2, 3, 10), (3, 2, 33),
          (1, 6, 8), (3, 2, 70), (70, 65, 66), (64, 80, 64)]


def products(shape):
    """The products (trans_a, trans_b, m, n, k) of a dense layer's kernels: forward
    X.W, backward X^T.delta and delta.W^T."""
    n, n_in, m = shape
    return {"forward": (False, False, n, m, n_in), "dW": (True, False, n_in, m, n),
            "dX": (False, True, n, n_in, m)}


@pytest.mark.parametrize("product", ["forward", "dW", "dX"])
def test_shapes_take_both_paths_on_this_cpu(product):
    """By this CPU's rule (_dense.takes_own_loops), SHAPES send each product of the
    kernels to the own loops and to BLAS: the tests below check both paths here."""
    paths = {_dense.takes_own_loops(*products(shape)[product]) for shape in SHAPES}
    assert paths == {True, False}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_dense_forward_writes_activation_and_derivative_cache(name, shape, rng):
    n, n_in, m = shape
    X = rng.normal(size=(n, n_in))
    W = rng.normal(size=(n_in, m))
    b = rng.normal(size=m)
    c = rng.uniform(0.5, 2.0, size=m)
    Z, A, D, G = (np.empty((n, m)) for _ in range(4))
    _dense.forward(X, W, b, c, Z, A, D, G, CODES[name], 0.01)
    a, d, g, z = ref.dense_forward(X, W, b, name, c)
    close(Z, z)
    close(A, a)
    close(D, d)
    if g is not None:
        close(G, g)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_dense_forward_without_preactivations(name, shape, rng):
    # the fused training step keeps no Z: the relu family takes a one-pass loop then
    n, n_in, m = shape
    X, W, b = rng.normal(size=(n, n_in)), rng.normal(size=(n_in, m)), rng.normal(size=m)
    c = rng.uniform(0.5, 2.0, size=m)
    A, D, G = (np.empty((n, m)) for _ in range(3))
    _dense.forward(X, W, b, c, EMPTY2, A, D, G, CODES[name], 0.01)
    a, d, g, _ = ref.dense_forward(X, W, b, name, c)
    close(A, a)
    close(D, d)


def test_dense_forward_skips_caches_given_empty_buffers(rng):
    X, W, b = rng.normal(size=(3, 2)), rng.normal(size=(2, 4)), rng.normal(size=4)
    A = np.empty((3, 4))
    _dense.forward(X, W, b, EMPTY1, EMPTY2, A, EMPTY2, EMPTY2, CODES["tanh"], 0.0)
    close(A, np.tanh(X @ W + b))


@pytest.mark.parametrize("name", ["sigmoid", "scaled_sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturating_activations_stay_finite_for_huge_inputs(name, dtype):
    X = np.array([[1e4], [-1e4], [800.0], [-800.0]], dtype=dtype)
    W, b, c = np.ones((1, 1), dtype), np.zeros(1, dtype), np.ones(1, dtype)
    A, D, G = (np.empty((4, 1), dtype) for _ in range(3))
    _dense.forward(X, W, b, c, np.empty((0, 0), dtype), A, D, G, CODES[name], 0.0)
    assert np.isfinite(A).all() and np.isfinite(D).all()
    expected = [1, 0, 1, 0] if name != "tanh" else [1, -1, 1, -1]
    np.testing.assert_allclose(A[:, 0], expected, atol=1e-7)
    np.testing.assert_allclose(D[:, 0], 0, atol=1e-7)


def test_relu_derivative_at_zero_is_zero_and_leaky_is_slope():
    X = np.zeros((1, 1))
    W, b = np.ones((1, 1)), np.zeros(1)
    A, D = np.empty((1, 1)), np.empty((1, 1))
    _dense.forward(X, W, b, EMPTY1, EMPTY2, A, D, EMPTY2, CODES["relu"], 0.0)
    assert D[0, 0] == 0.0
    _dense.forward(X, W, b, EMPTY1, EMPTY2, A, D, EMPTY2, CODES["leaky_relu"], 0.25)
    assert D[0, 0] == 0.25


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_dense_backward_accumulates_and_returns_input_gradient(name, shape, rng):
    n, n_in, m = shape
    X = rng.normal(size=(n, n_in))
    W, b = rng.normal(size=(n_in, m)), rng.normal(size=m)
    c = rng.uniform(0.5, 2.0, size=m)
    _, d, g, _ = ref.dense_forward(X, W, b, name, c)
    upstream = rng.normal(size=(n, m))
    # start from non-zero gradients: the kernel must add, not overwrite
    dW0, db0, dc0 = rng.normal(size=(n_in, m)), rng.normal(size=m), rng.normal(size=m)
    dW, db, dc = dW0.copy(), db0.copy(), dc0.copy()
    dX = np.full((n, n_in), np.nan)    # overwritten, not accumulated
    D = EMPTY2 if name == "identity" else d
    G = EMPTY2 if g is None else g
    delta = EMPTY2 if name == "identity" else np.empty((n, m))
    _dense.backward(X, W, upstream, D, G, delta, dW, db, dc, dX)
    rdW, rdb, rdc, rdX = ref.dense_backward(X, W, upstream, d, g)
    close(dW, dW0 + rdW)
    close(db, db0 + rdb)
    close(dX, rdX)
    if g is not None:
        close(dc, dc0 + rdc)
    else:
        assert np.array_equal(dc, dc0)


def test_dense_backward_skips_input_gradient_given_empty_buffer(rng):
    X, W, upstream = rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=(4, 2))
    dW, db = np.zeros((3, 2)), np.zeros(2)
    _dense.backward(X, W, upstream, EMPTY2, EMPTY2, EMPTY2, dW, db, EMPTY1, np.empty((0, 3)))
    close(dW, X.T @ upstream)


LOSSES = [
    ("mse", _losses.mse, ref.mse, "float"),
    ("bce", _losses.bce_with_logits, ref.bce_with_logits, "unit"),
    ("ce_probs", _losses.cross_entropy_probs, ref.cross_entropy, "probs"),
    ("ce_labels", _losses.cross_entropy_labels, ref.cross_entropy, "labels"),
    ("poisson", _losses.poisson, ref.poisson_nll, "counts"),
]


def make_target(kind, rng, n, k):
    if kind == "float":
        return rng.normal(size=(n, k))
    if kind == "unit":
        return rng.uniform(size=(n, k))
    if kind == "probs":
        return rng.dirichlet(np.ones(k), size=n)
    if kind == "counts":
        return rng.poisson(3.0, size=(n, k)).astype(np.float64)
    return rng.integers(0, k, size=n).astype(np.int64)


@pytest.mark.parametrize("label, kernel, reference, kind", LOSSES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_loss_kernels_equal_reference(label, kernel, reference, kind, weighted, reduction, rng):
    n, k = 9, 4
    logits = rng.normal(scale=3.0, size=(n, k))
    target = make_target(kind, rng, n, k)
    weight = rng.uniform(0.1, 2.0, size=n) if weighted else None
    value, grad = reference(logits, target, weight, reduction)
    # the scale a loss object passes for each reduction
    total = n if weight is None else weight.sum()
    per_output = k if label in ("mse", "bce", "poisson") else 1
    scale = 1.0 / (total * per_output) if reduction == "mean" else 1.0
    out = np.empty((n, k))
    got = kernel(logits, target, EMPTY1 if weight is None else weight, out, scale)
    np.testing.assert_allclose(got, value, rtol=1e-12)
    close(out, grad)


@pytest.mark.parametrize("kernel, kind", [(_losses.cross_entropy_labels, "labels"),
                                          (_losses.cross_entropy_probs, "probs"),
                                          (_losses.bce_with_logits, "unit")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_finite_for_huge_logits(kernel, kind, dtype, rng):
    from scipy.special import log_expit, log_softmax
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]], dtype=dtype)
    target = make_target(kind, rng, 2, 3)
    target = target if kind == "labels" else target.astype(dtype)
    grad = np.empty_like(logits)
    value = kernel(logits, target, np.empty(0, dtype), grad, 1.0)
    z = logits.astype(np.float64)
    if kind == "unit":   # SciPy's stable log-sigmoid as the oracle
        expected = -(target * log_expit(z) + (1 - target) * log_expit(-z)).sum()
    else:
        t = np.eye(3)[target] if kind == "labels" else target.astype(np.float64)
        expected = -(t * log_softmax(z, axis=1)).sum()
    assert np.isfinite(value) and np.isfinite(grad).all()
    np.testing.assert_allclose(value, expected, rtol=1e-6)


@pytest.mark.parametrize("momentum, nesterov, weight_decay",
                         [(0.0, False, 0.0), (0.0, False, 0.1), (0.9, False, 0.0),
                          (0.9, True, 0.01), (0.5, False, 0.2)])
def test_sgd_kernel_equals_reference(momentum, nesterov, weight_decay, rng):
    p, g, buf = rng.normal(size=50), rng.normal(size=50), rng.normal(size=50)
    expected_p, expected_buf = ref.sgd_step(p, g, buf, 0.05, momentum, weight_decay, nesterov)
    p2, buf2 = p.copy(), buf.copy()
    _flat.sgd(p2, g, buf2 if momentum else EMPTY1, 0.05, momentum, weight_decay, nesterov)
    close(p2, expected_p)
    if momentum:
        close(buf2, expected_buf)


@pytest.mark.parametrize("t", [1, 2, 10])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_adam_kernel_equals_reference(t, weight_decay, rng):
    p, g = rng.normal(size=50), rng.normal(size=50)
    m, v = rng.normal(size=50), rng.uniform(size=50)
    ep, em, ev = ref.adam_step(p, g, m, v, t, 0.01, 0.8, 0.99, 1e-8, weight_decay)
    p2, m2, v2 = p.copy(), m.copy(), v.copy()
    _flat.adam(p2, g, m2, v2, 0.01, 0.8, 0.99, 1e-8, weight_decay, 1 - 0.8 ** t, 1 - 0.99 ** t)
    close(p2, ep)
    close(m2, em)
    close(v2, ev)
    g_before = g.copy()
    _flat.adam(p2, g, m2, v2, 0.01, 0.8, 0.99, 1e-8, weight_decay, 0.5, 0.5)
    assert np.array_equal(g, g_before), "the update must never write the gradient"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_all_finite_matches_numpy_across_its_blocks(dtype, rng):
    # the check works in blocks of 1024 entries, each summed in four vectors and a
    # scalar tail: bad entries at every edge, and at every place of a short array
    info = np.finfo(dtype)
    for n in (0, 1, 7, 37, 1023, 1024, 1025, 3000):
        x = rng.normal(size=n).astype(dtype)
        if n:
            x[0], x[-1] = info.max, -info.max          # huge but finite
            x[n // 2] = info.tiny / 4                  # subnormal
        assert _flat.all_finite(x) == bool(np.isfinite(x).all())
        for i in range(n) if n == 37 else sorted({0, 1023, 1024, n // 2, n - 1}):
            if not 0 <= i < n:
                continue
            for bad in (np.nan, np.inf, -np.inf):
                y = x.copy()
                y[i] = bad
                assert _flat.all_finite(y) == bool(np.isfinite(y).all())


def test_finite_and_norm_helpers(rng):
    x = rng.normal(size=100)
    assert _flat.all_finite(x)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[37] = bad
        assert not _flat.all_finite(y)
        assert not _flat.all_finite(y.astype(np.float32))
    np.testing.assert_allclose(_flat.squared_norm(x), np.dot(x, x), rtol=1e-12)
    big = np.full(4, 1e30, dtype=np.float32)     # squares overflow float32
    np.testing.assert_allclose(_flat.squared_norm(big), 4e60, rtol=1e-6)
