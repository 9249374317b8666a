"""bpcore's own loops for small matrix products against NumPy's float64 matmul.

The loops work in blocks of 3 rows x 4 vectors of 32 bytes (above 8 rows, and for 2
or 3 rows) or 4 rows x 2 vectors (4 doubles or 8 floats a vector) and treat what is
left over in separate paths: two rows, single rows (their sums split between even and
odd steps of the inner dimension), single vectors, the last columns narrower than a vector
(dot products four rows at a time and then singly, or vectors along the rows for A^T.B),
B^T copied or read as dot products, a one-column A^T.b turned into a one-row product.
The shapes below reach every one of those paths in both precisions.
"""
import platform
from pathlib import Path

import numpy as np
import pytest

import bpcore as bp
from bpcore import _dense

ROWS = [1, 2, 3, 4, 5, 8, 9, 17, 100]
COLUMNS = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 24, 33, 65]
DEPTHS = [1, 2, 5, 16, 17, 100]
TOLERANCE = {np.float64: 1e-12, np.float32: 2e-5}


def operands(rng, dtype, trans_a, trans_b, m, n, k):
    A = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    C = rng.standard_normal((m, n)).astype(dtype)
    return A, B, C


def reference(A, B, C, trans_a, trans_b, alpha, beta):
    a = (A.T if trans_a else A).astype(np.float64)
    b = (B.T if trans_b else B).astype(np.float64)
    return alpha * (a @ b) + beta * C.astype(np.float64)


def assert_product(C, expected, dtype, k):
    # float32 sums of k products: the error grows with k and with the operands' size
    tol = TOLERANCE[dtype]
    scale = np.sqrt(k) * (1 + np.abs(expected).max())
    np.testing.assert_allclose(C, expected, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("m", ROWS)
def test_own_product_equals_numpy_for_every_block_and_tail(m, trans_a, trans_b, dtype,
                                                           rng):
    for n in COLUMNS:
        for k in DEPTHS:
            if trans_b and n * k > 4096:        # B^T is copied: beyond the scratch
                continue
            A, B, C0 = operands(rng, dtype, trans_a, trans_b, m, n, k)
            for alpha, beta in ((1.0, 0.0), (-0.25, 1.0), (2.0, 0.5)):
                C = C0.copy()
                _dense.matmul(A, B, C, trans_a, trans_b, alpha, beta, "own")
                assert_product(C, reference(A, B, C0, trans_a, trans_b, alpha, beta),
                               dtype, k)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("path", ["own", "blas", "auto"])
def test_beta_zero_writes_over_nan(path, dtype, rng):
    # beta = 0 means C is not read (BLAS's convention): NaN in C must not leak
    A, B, _ = operands(rng, dtype, 0, 0, 9, 17, 5)
    C = np.full((9, 17), np.nan, dtype)
    _dense.matmul(A, B, C, False, False, 1.0, 0.0, path)
    assert_product(C, A.astype(np.float64) @ B, dtype, 5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_own_and_blas_agree_where_both_apply(dtype, rng):
    for trans_a, trans_b, m, n, k in [(0, 0, 100, 16, 16), (1, 0, 16, 16, 100),
                                      (0, 1, 100, 16, 16), (0, 0, 1, 64, 64),
                                      (0, 0, 64, 64, 64), (1, 0, 64, 10, 128)]:
        A, B, C0 = operands(rng, dtype, trans_a, trans_b, m, n, k)
        own, blas = C0.copy(), C0.copy()
        _dense.matmul(A, B, own, trans_a, trans_b, 1.5, 1.0, "own")
        _dense.matmul(A, B, blas, trans_a, trans_b, 1.5, 1.0, "blas")
        assert_product(own, blas.astype(np.float64), dtype, k)


def test_depth_zero_gives_beta_times_c(rng):
    A, B = np.empty((4, 0)), np.empty((0, 9))
    C0 = rng.standard_normal((4, 9))
    for path in ("own", "blas"):
        C = C0.copy()
        _dense.matmul(A, B, C, False, False, 1.0, 0.5, path)
        np.testing.assert_array_equal(C, 0.5 * C0)


def test_matmul_rejects_shapes_that_do_not_agree():
    with pytest.raises(ValueError, match="do not agree"):
        _dense.matmul(np.zeros((3, 4)), np.zeros((5, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="path must be"):
        _dense.matmul(np.zeros((3, 4)), np.zeros((4, 2)), np.zeros((3, 2)), path="fast")


def test_own_loops_refuse_what_their_scratch_cannot_hold():
    # op(B) = B^T is copied: at most 4096 entries
    with pytest.raises(ValueError, match="own loops cannot take"):
        _dense.matmul(np.zeros((9, 100)), np.zeros((50, 100)), np.zeros((9, 50)),
                      False, True, path="own")
    # k above 512: B's last columns, transposed, would not fit
    with pytest.raises(ValueError, match="own loops cannot take"):
        _dense.matmul(np.zeros((2, 600)), np.zeros((600, 3)), np.zeros((2, 3)),
                      path="own")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_auto_path_above_the_crossover_equals_numpy(dtype, rng):
    # products past the crossover (and past the own loops' limits) go to BLAS
    for trans_a, trans_b, m, n, k in [(0, 0, 128, 128, 128), (0, 1, 8, 100, 600),
                                      (1, 0, 600, 3, 700)]:
        A, B, C0 = operands(rng, dtype, trans_a, trans_b, m, n, k)
        C = C0.copy()
        _dense.matmul(A, B, C, trans_a, trans_b, 1.0, 0.0, "auto")
        assert_product(C, reference(A, B, C0, trans_a, trans_b, 1.0, 0.0), dtype, k)


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs /proc/cpuinfo")
def test_crossover_follows_the_cpu():
    # decided by the CPU's features, not by timing (src/_kernels.c); the portable
    # path's plain loops keep the small limit on every CPU
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    if platform.machine() not in ("x86_64", "AMD64") or not flags:
        pytest.skip("x86-64 CPU flags not readable")
    portable = bp.build_info()["kernels"] == "portable"
    expected = 4096 if portable or "avx512f" in flags else 262144
    assert _dense.small_product_limit() == expected
    # products with an epilogue go further only where OpenBLAS's small kernels took
    # the plain ones from the own loops (AVX-512), and never on the portable path
    fused = 262144 if not portable and "avx512f" in flags else 0
    assert _dense.fused_product_limit() == fused


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_skinny_batches_of_wide_layers_equal_numpy(dtype, rng):
    # at most 8 rows of X or delta: the own loops at any size their scratch allows
    # (k above 512 where n is a multiple of 8; B^T read as dot products below 8 rows)
    for trans_a, trans_b, m, n, k in [(0, 0, 1, 256, 784), (0, 0, 8, 256, 784),
                                      (0, 0, 3, 128, 256), (1, 0, 784, 256, 1),
                                      (1, 0, 256, 128, 8), (0, 1, 1, 784, 256),
                                      (0, 1, 7, 256, 128)]:
        A, B, C0 = operands(rng, dtype, trans_a, trans_b, m, n, k)
        for path in ("own", "auto"):
            C = C0.copy()
            _dense.matmul(A, B, C, trans_a, trans_b, -0.5, 1.0, path)
            assert_product(C, reference(A, B, C0, trans_a, trans_b, -0.5, 1.0), dtype, k)


def own_loops_rule(trans_a, trans_b, m, n, k):
    """The documented rule of src/_blas.pxd (small_product), restated: the own loops
    take a product their scratch can hold, when it has at most small_product_limit()
    multiply-adds (half that for delta.W^T where the limit is the large one), or,
    where that limit is the large one (no AVX-512), when its batch is skinny."""
    limit, scratch = _dense.small_product_limit(), _dense.SMALL_SCRATCH
    if trans_b:
        can = (m <= _dense.SKINNY_ROWS and not trans_a) or n * k <= scratch
    else:
        can = trans_a or n % 8 == 0 or k <= _dense.SMALL_PRODUCT_DEPTH
    if not can:
        return False
    large = limit > 4096
    if large and (k if trans_a else m) <= _dense.SKINNY_ROWS:
        return True
    return m * n * k <= (limit // 2 if trans_b and large else limit)


def test_which_products_take_the_own_loops():
    # whatever this CPU's limit, the engine's choice follows the documented rule
    shapes = [(100, 16, 16), (16, 16, 100), (512, 512, 512), (2, 3, 600), (9, 100, 50),
              (1, 256, 784), (784, 256, 8), (784, 256, 9), (64, 64, 64), (64, 64, 32),
              (128, 64, 64), (8, 8, 8), (16, 16, 16), (4, 1024, 1024), (300, 3, 7)]
    for m, n, k in shapes:
        for trans_a in (False, True):
            for trans_b in (False, True):
                assert _dense.takes_own_loops(trans_a, trans_b, m, n, k) == \
                    own_loops_rule(trans_a, trans_b, m, n, k), (trans_a, trans_b, m, n, k)
    # what holds on every CPU: big products go to BLAS, tiny ones stay, and never a
    # product the scratch cannot hold
    limit = _dense.small_product_limit()
    assert limit >= 4096
    assert not _dense.takes_own_loops(False, False, 512, 512, 512)
    assert _dense.takes_own_loops(False, False, 8, 8, 8)
    assert not _dense.takes_own_loops(False, False, 2, 3, 600)       # tail needs k <= 512
    assert not _dense.takes_own_loops(False, True, 9, 100, 50)       # B^T copy too big
    assert not _dense.takes_own_loops(True, False, 784, 256, 9)
    assert not _dense.takes_own_loops(False, True, 64, 64, 64)
    assert not _dense.takes_own_loops(False, False, 128, 64, 64)


def test_which_layer_products_take_the_fused_loops():
    # the documented rule of src/_blas.pxd (fused_product), restated: the plain rule,
    # or, for 16, 24 or 32 columns (and for delta . W^T above 8 rows), at most
    # fused_product_limit() multiply-adds where the scratch can hold the product
    limit, scratch = _dense.fused_product_limit(), _dense.SMALL_SCRATCH
    assert _dense.FUSED_PRODUCT_COLUMNS == 32
    shapes = [(100, 16, 16), (100, 16, 2), (9, 64, 64), (8, 64, 64), (64, 64, 64),
              (65, 64, 64), (128, 10, 128), (100, 70, 70), (12, 24, 24), (300, 3, 7),
              (256, 32, 32), (257, 32, 32), (40, 72, 600), (40, 80, 600), (100, 24, 40),
              (100, 20, 20), (100, 40, 40), (128, 32, 64), (100, 8, 64), (6, 32, 40),
              (100, 48, 48), (100, 33, 33)]
    for m, n, k in shapes:
        for trans_b in (False, True):
            can = n * k <= scratch if trans_b else (n % 8 == 0 or k <= 512)
            expected = own_loops_rule(False, trans_b, m, n, k) or (
                (m > 8 or not trans_b) and n in (16, 24, 32) and m * n * k <= limit and can)
            assert _dense.takes_fused_loops(trans_b, m, n, k) == expected, (trans_b, m, n, k)
    assert not _dense.takes_fused_loops(False, 512, 512, 512)
    assert _dense.takes_fused_loops(False, 8, 8, 8)
    if limit:
        assert _dense.takes_fused_loops(False, 100, 16, 16)          # W1's hidden layer
        assert _dense.takes_fused_loops(True, 100, 16, 16)
        assert _dense.takes_fused_loops(False, 8, 32, 32)            # skinny forward
        assert not _dense.takes_fused_loops(True, 8, 32, 32)         # skinny delta: BLAS
        assert not _dense.takes_fused_loops(False, 64, 64, 64)       # too wide
        assert not _dense.takes_fused_loops(False, 128, 10, 128)     # not whole vectors
        assert _dense.takes_fused_loops(False, 256, 32, 32)          # at the limit
        assert not _dense.takes_fused_loops(False, 257, 32, 32)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch", [586, 1366, 5000])
def test_one_output_weight_gradient_at_large_batches(batch, dtype, rng):
    # X^T.b of a one-unit layer with a batch whose X^T.b -> b^T.X rewrite would need
    # more scratch than there is: it must take the path that needs none
    for n_in in (3, 7):
        A, B, C0 = operands(rng, dtype, 1, 0, n_in, 1, batch)
        for path in ("own", "auto"):
            C = C0.copy()
            _dense.matmul(A, B, C, True, False, 1.0, 0.0, path)
            assert_product(C, reference(A, B, C0, 1, 0, 1.0, 0.0), dtype, batch)
    model = bp.Model([bp.Dense(4, 7, "relu"), bp.Dense(7, 1)], dtype=dtype, seed=0)
    X, y = rng.standard_normal((batch, 4)).astype(dtype), rng.standard_normal((batch, 1))
    model.loss_and_grad(X, y, bp.MSELoss())
    hidden = np.maximum(X.astype(np.float64) @ model.layers[0].W + model.layers[0].b, 0)
    out = hidden @ model.layers[1].W + model.layers[1].b
    dout = 2 * (out - y) / batch
    np.testing.assert_allclose(model.layers[1].dW, hidden.T @ dout,
                               rtol=TOLERANCE[dtype] * 10, atol=TOLERANCE[dtype] * 10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "identity"])
@pytest.mark.parametrize("n_in", [1, 2, 3])
@pytest.mark.parametrize("width", [4, 6, 8, 12, 16, 24, 32, 40])
@pytest.mark.parametrize("batch", [1, 5, 100])
def test_layers_of_one_or_two_inputs_equal_numpy(batch, width, n_in, activation, dtype):
    # a layer of at most two inputs and one to four vectors of outputs keeps its
    # weights in registers (bp_tiny_k_rows); 3 inputs and the other widths take the
    # blocks of rows: predict, and one fused SGD step of [that layer, one unit] under
    # MSE (the layer's derivative cache written by the forward for leaky ReLU), against
    # NumPy in float64
    rng = np.random.default_rng(batch * 1000 + width * 10 + n_in)
    model = bp.Model([bp.Dense(n_in, width, activation), bp.Dense(width, 1)], dtype=dtype,
                     seed=1)
    for layer in model.layers:
        layer.b[...] = rng.normal(size=layer.b.shape)
    X = rng.normal(size=(batch, n_in)).astype(dtype)
    y = rng.normal(size=(batch, 1)).astype(dtype)
    W = [layer.W.astype(np.float64) for layer in model.layers]
    b = [layer.b.astype(np.float64) for layer in model.layers]
    z = X.astype(np.float64) @ W[0] + b[0]
    h = {"relu": np.maximum(z, 0), "leaky_relu": np.where(z > 0, z, 0.01 * z),
         "identity": z}[activation]
    dh = {"relu": (z > 0) * 1.0, "leaky_relu": np.where(z > 0, 1.0, 0.01),
          "identity": np.ones_like(z)}[activation]
    out = h @ W[1] + b[1]
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(model.predict(X), out, rtol=tol, atol=tol)

    lr = 0.1
    d2 = 2 * (out - y) / batch
    d1 = (d2 @ W[1].T) * dh
    value = model.train_step(X, y, bp.MSELoss(), bp.SGD(model, lr=lr))
    assert value == pytest.approx(np.mean((out - y) ** 2), rel=10 * tol)
    expected = [(W[0] - lr * X.T @ d1, b[0] - lr * d1.sum(0)),
                (W[1] - lr * h.T @ d2, b[1] - lr * d2.sum(0))]
    for layer, (We, be) in zip(model.layers, expected):
        np.testing.assert_allclose(layer.W, We, rtol=tol, atol=tol)
        np.testing.assert_allclose(layer.b, be, rtol=tol, atol=tol)


def layer_reference(X, W, b, kind, slope=0.01):
    z = X.astype(np.float64) @ W.astype(np.float64) + b.astype(np.float64)
    if kind == 3:
        return np.maximum(z, 0), (z > 0).astype(float)
    if kind == 4:
        return np.where(z > 0, z, slope * z), np.where(z > 0, 1.0, slope)
    return z, np.ones_like(z)


# (m, n, k): W1's hidden layer, a tiny-input layer, the tails of a width that is not a
# multiple of the vector, a skinny batch, a 64-wide layer (2^18 multiply-adds) and
# a layer of 3 outputs
LAYER_SHAPES = [(100, 16, 16), (100, 16, 2), (33, 20, 7), (5, 24, 24), (64, 64, 64),
                (12, 3, 40)]


@pytest.mark.parametrize("path", ["own", "blas", "auto"])
@pytest.mark.parametrize("kind", [0, 3, 4])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layer_forward_routes_equal_numpy(dtype, kind, path, rng):
    # both of the engine's routes for a layer's forward pass: the own loops with the
    # bias and activation in their store, and BLAS's product then the bias pass
    for m, n, k in LAYER_SHAPES:
        X, W, b = (rng.normal(size=s).astype(dtype) for s in ((m, k), (k, n), (n,)))
        A, D = np.full((m, n), np.nan, dtype), np.full((m, n), np.nan, dtype)
        _dense.layer_forward(X, W, b, A, D, kind, 0.01, path)
        a, d = layer_reference(X, W, b, kind)
        assert_product(A, a, dtype, k)
        np.testing.assert_array_equal(D, d.astype(dtype))
        _dense.layer_forward(X, W, b, A, np.empty((0, n), dtype), kind, 0.01, path)
        assert_product(A, a, dtype, k)


@pytest.mark.parametrize("path", ["own", "blas", "auto"])
@pytest.mark.parametrize("relu_output", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layer_delta_routes_equal_numpy(dtype, relu_output, path, rng):
    # dX = delta . W^T through the derivative below (or a ReLU's output) and its
    # column sums, by the own loops' store or by BLAS then the delta pass (with and
    # without the copy of W^T)
    for m, n_in, n_out in [(100, 16, 16), (33, 20, 7), (5, 24, 24), (64, 64, 64),
                           (12, 40, 3)]:
        delta = rng.normal(size=(m, n_out)).astype(dtype)
        W = rng.normal(size=(n_in, n_out)).astype(dtype)
        M = rng.normal(size=(m, n_in)).astype(dtype)
        if relu_output:
            M = np.maximum(M, 0)                         # a ReLU's output
        mask = (M > 0).astype(np.float64) if relu_output else M.astype(np.float64)
        expected = (delta.astype(np.float64) @ W.T.astype(np.float64)) * mask
        for Wt in (None, np.empty(n_in * n_out, dtype)):
            out, colsum = np.full((m, n_in), np.nan, dtype), np.full(n_in, np.nan, dtype)
            own = path == "own" or (path == "auto"
                                     and _dense.takes_fused_loops(True, m, n_in, n_out))
            M_read = M if own else mask.astype(dtype)     # BLAS's route reads a cache
            _dense.layer_delta(delta, W, M_read, out, colsum, relu_output,
                               np.empty((m, n_in), dtype), Wt, path)
            assert_product(out, expected, dtype, n_out)
            assert_product(colsum, expected.sum(axis=0), dtype, n_out * m)


def test_layer_routes_refuse_what_they_cannot_take(rng):
    X, W, b = np.ones((4, 3)), np.ones((3, 5)), np.ones(5)
    A = np.empty((4, 5))
    with pytest.raises(ValueError, match="path must be"):
        _dense.layer_forward(X, W, b, A, A.copy(), 3, 0.01, "fast")
    with pytest.raises(ValueError, match="kind must be"):
        _dense.layer_forward(X, W, b, A, A.copy(), 1)
    with pytest.raises(ValueError, match="W must have shape"):
        _dense.layer_forward(X, np.ones((4, 5)), b, A, A.copy(), 3)
    with pytest.raises(ValueError, match="cannot take"):       # last columns past the scratch
        _dense.layer_forward(np.ones((9, 600)), np.ones((600, 3)), np.ones(3),
                             np.empty((9, 3)), np.empty((0, 3)), 0, 0.01, "own")
    delta, out, colsum = np.ones((4, 5)), np.empty((4, 3)), np.empty(3)
    with pytest.raises(ValueError, match="needs dX"):
        _dense.layer_delta(delta, W, np.ones((4, 3)), out, colsum, False, None, None, "blas")
    with pytest.raises(ValueError, match="colsum must hold"):
        _dense.layer_delta(delta, W, np.ones((4, 3)), out, np.empty(4))
    with pytest.raises(ValueError, match="cannot take"):       # W^T past the scratch
        _dense.layer_delta(np.ones((9, 100)), np.ones((50, 100)), np.ones((9, 50)),
                           np.empty((9, 50)), np.empty(50), False, None, None, "own")


def test_layer_routes_refuse_every_mismatched_buffer_and_write_nothing():
    X, W, b = np.ones((4, 3)), np.ones((3, 5)), np.ones(5)
    good = dict(A=np.zeros((4, 5)), D=np.zeros((4, 5)))
    for name, bad in [("A", np.zeros((4, 6))), ("A", np.zeros((3, 5))),
                      ("D", np.zeros((4, 4))), ("b", np.ones(4))]:
        A, D = good["A"].copy(), good["D"].copy()
        args = dict(A=A, D=D, b=b)
        args[name] = bad
        for path in ("own", "blas", "auto"):
            with pytest.raises(ValueError, match=f"^{name} must"):
                _dense.layer_forward(X, W, args["b"], args["A"], args["D"], 3, 0.01, path)
        assert not A.any() and not D.any()
    delta, M = np.ones((4, 5)), np.ones((4, 3))
    for name, bad in [("M", np.ones((4, 4))), ("out", np.zeros((5, 3))),
                      ("dX", np.zeros((4, 2))), ("Wt", np.zeros(14)),
                      ("colsum", np.zeros(2))]:
        args = dict(M=M, out=np.zeros((4, 3)), colsum=np.zeros(3), dX=np.zeros((4, 3)),
                    Wt=np.zeros(15))
        args[name] = bad
        for path in ("own", "blas", "auto"):
            with pytest.raises(ValueError, match=f"^{name} must"):
                _dense.layer_delta(delta, W, args["M"], args["out"], args["colsum"], False,
                                   args["dX"], args["Wt"], path)
        assert not args["out"].any() and not args["colsum"].any()


@pytest.mark.parametrize("path", ["own", "blas", "auto"])
def test_layer_routes_at_zero_sizes(path):
    # no inputs: A = f(b) on every row; no rows or no outputs: nothing to do. delta.W^T
    # over no columns is 0, and colsum the sum of no rows
    b = np.array([-1.0, 0.5, 2.0])
    A, D = np.full((4, 3), np.nan), np.full((4, 3), np.nan)
    _dense.layer_forward(np.empty((4, 0)), np.empty((0, 3)), b, A, D, 3, 0.01, path)
    np.testing.assert_array_equal(A, np.tile(np.maximum(b, 0), (4, 1)))
    np.testing.assert_array_equal(D, np.tile((b > 0).astype(float), (4, 1)))
    _dense.layer_forward(np.empty((0, 2)), np.ones((2, 3)), b, np.empty((0, 3)),
                         np.empty((0, 3)), 3, 0.01, path)
    for n, n_in, n_out in [(4, 3, 0), (0, 3, 5), (4, 0, 5)]:
        out, colsum = np.full((n, n_in), np.nan), np.full(n_in, np.nan)
        _dense.layer_delta(np.ones((n, n_out)), np.ones((n_in, n_out)), np.ones((n, n_in)),
                           out, colsum, False, np.empty((n, n_in)), None, path)
        np.testing.assert_array_equal(out, np.zeros((n, n_in)))
        np.testing.assert_array_equal(colsum, np.zeros(n_in))
