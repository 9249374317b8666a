# Dense layer kernels: forward fused with the activation and its derivative cache,
# and the gradient-accumulating backward pass.
#
# Owns nothing and allocates nothing: every buffer is handed in by bpcore/nn/model.py,
# which has already checked shapes, dtypes and contiguity. The typed memoryviews check
# dtypes and contiguity again, and each kernel checks that the shapes agree (a few
# integer compares, with the GIL held: a ValueError, nothing written), so that no
# Python call can make a product or a pass run off a buffer. Past those checks each
# kernel releases the GIL for its whole body and cannot raise.
#
# Shapes (B = batch, I = n_in, O = n_out):
#   X (B, I) input, W (I, O), b (O,), scale (O,) the per-unit c of scaled sigmoid units
#   Z (B, O) pre-activation z = X.W + b, A (B, O) activation, D (B, O) derivative
#   cache f'(z), G (B, O) sigmoid(z) of scaled units. An array of size 0 in place of
#   Z, D, G or dX means "not wanted".
# Aliasing: outputs never alias inputs. A is written by the product first, so it must
# not be X.
from cython cimport floating

from _blas cimport (BP_SMALL_SCRATCH, FUSED_COLUMNS, SKINNY, SMALL_DEPTH, blas_gemm, bp_fused_work_limit,
                   bp_small_work_limit, fused_product, gemm, own_can_take, own_gemm,
                   small_product)
from _loops cimport (bias_activation, delta_and_bias_grad, import_kernels, small_delta_back,
                     small_dense_forward, transpose)

import_kernels()


cdef inline floating* data_or_null(floating[:, ::1] array) noexcept nogil:
    return &array[0, 0] if array.shape[0] > 0 else NULL


cdef int check_matrix(const floating[:, ::1] array, Py_ssize_t rows, Py_ssize_t cols,
                      str name, bint optional=False) except -1:
    """Raise ValueError unless ``array`` is (rows, cols); with ``optional``, an array
    with no rows (absent, as the kernels read it) passes too."""
    if optional and array.shape[0] == 0:
        return 0
    if array.shape[0] != rows or array.shape[1] != cols:
        raise ValueError(f"{name} must have shape ({rows}, {cols}); got "
                         f"({array.shape[0]}, {array.shape[1]})")
    return 0


cdef int check_vector(const floating[::1] array, Py_ssize_t length, str name,
                      bint optional=False) except -1:
    """Raise ValueError unless ``array`` holds ``length`` entries (``optional``: or none)."""
    if optional and array.shape[0] == 0:
        return 0
    if array.shape[0] != length:
        raise ValueError(f"{name} must hold {length} entries; got {array.shape[0]}")
    return 0


cdef int check_activation(const floating[::1] scale, Py_ssize_t n_out, int kind,
                          ) except -1:
    """The element-wise pass reads ``scale`` for scaled sigmoid units (code 5)."""
    check_vector(scale, n_out, "scale", optional=kind != 5)
    return 0


def forward(const floating[:, ::1] X not None, const floating[:, ::1] W not None,
            const floating[::1] b not None, const floating[::1] scale not None,
            floating[:, ::1] Z not None, floating[:, ::1] A not None,
            floating[:, ::1] D not None, floating[:, ::1] G not None, int kind,
            double slope):
    """A = f(X.W + b); Z = X.W + b, D = f'(Z) and G = sigmoid(Z) when given (non-empty).

    IN: X, W, b, scale (read only). OUT: Z, A, D, G.
    """
    cdef Py_ssize_t n = X.shape[0], n_in = X.shape[1], n_out = W.shape[1]
    check_matrix(W, n_in, n_out, "W")
    check_vector(b, n_out, "b")
    check_activation(scale, n_out, kind)
    check_matrix(A, n, n_out, "A")
    check_matrix(Z, n, n_out, "Z", optional=True)
    check_matrix(D, n, n_out, "D", optional=True)
    check_matrix(G, n, n_out, "G", optional=True)
    if n == 0 or n_out == 0:
        return
    cdef const floating* c = &scale[0] if scale.shape[0] > 0 else NULL
    with nogil:
        gemm(False, False, <int> n, <int> n_out, <int> n_in, <floating> 1.0,
             &X[0, 0], <int> n_in, &W[0, 0], <int> n_out, <floating> 0.0,
             &A[0, 0], <int> n_out)
        bias_activation(n, n_out, &A[0, 0], &b[0], c, data_or_null(Z), data_or_null(D),
                        data_or_null(G), kind, slope)


def activate(floating[:, ::1] A not None, const floating[::1] b not None,
             const floating[::1] scale not None, floating[:, ::1] Z not None,
             floating[:, ::1] D not None, floating[:, ::1] G not None, int kind,
             double slope):
    """forward's element-wise pass alone, in place: A = f(A + b), Z, D, G as there.

    For tests of the activation functions: with b = -0.0, z = A + b is A itself
    (-0.0 included), so A = f(A) element by element.
    IN: A, b, scale. OUT: A, Z, D, G.
    """
    cdef Py_ssize_t n = A.shape[0], n_out = A.shape[1]
    check_vector(b, n_out, "b")
    check_activation(scale, n_out, kind)
    check_matrix(Z, n, n_out, "Z", optional=True)
    check_matrix(D, n, n_out, "D", optional=True)
    check_matrix(G, n, n_out, "G", optional=True)
    if n == 0 or n_out == 0:
        return
    cdef const floating* c = &scale[0] if scale.shape[0] > 0 else NULL
    with nogil:
        bias_activation(A.shape[0], A.shape[1], &A[0, 0], &b[0], c, data_or_null(Z),
                        data_or_null(D), data_or_null(G), kind, slope)


def backward(const floating[:, ::1] X not None, const floating[:, ::1] W not None,
             const floating[:, ::1] upstream not None, const floating[:, ::1] D not None,
             const floating[:, ::1] G not None, floating[:, ::1] delta not None,
             floating[:, ::1] dW not None, floating[::1] db not None,
             floating[::1] dscale not None, floating[:, ::1] dX not None):
    """Accumulate this layer's parameter gradients from dL/dA = upstream.

    delta = upstream * D (D empty: f' = 1, delta is upstream itself)
    dW += X^T . delta;  db += sum over rows of delta;  dscale += sum of upstream * G
    dX  = delta . W^T   (overwritten, not accumulated; skipped when dX is empty)

    IN: X, W, upstream, D, G. OUT: delta (workspace), dW, db, dscale (accumulated), dX.
    """
    cdef Py_ssize_t n = X.shape[0], n_in = X.shape[1], n_out = W.shape[1]
    check_matrix(W, n_in, n_out, "W")
    check_matrix(upstream, n, n_out, "upstream")
    check_matrix(D, n, n_out, "D", optional=True)
    check_matrix(G, n, n_out, "G", optional=True)
    check_matrix(delta, n, n_out, "delta", optional=D.shape[0] == 0)
    check_matrix(dW, n_in, n_out, "dW")
    check_vector(db, n_out, "db")
    check_vector(dscale, n_out, "dscale", optional=G.shape[0] == 0)
    check_matrix(dX, n, n_in, "dX", optional=True)
    if n == 0 or n_out == 0:
        return
    cdef bint has_deriv = D.shape[0] > 0
    cdef const floating* dlt = &delta[0, 0] if has_deriv else &upstream[0, 0]
    cdef const floating* d = &D[0, 0] if has_deriv else NULL
    cdef const floating* g = &G[0, 0] if G.shape[0] > 0 else NULL
    cdef floating* dc = &dscale[0] if g != NULL else NULL
    with nogil:
        delta_and_bias_grad(n, n_out, &upstream[0, 0], d, g,
                            &delta[0, 0] if has_deriv else NULL, &db[0], dc, False)
        gemm(True, False, <int> n_in, <int> n_out, <int> n, <floating> 1.0,
             &X[0, 0], <int> n_in, dlt, <int> n_out, <floating> 1.0,
             &dW[0, 0], <int> n_out)
        if dX.shape[0] > 0:
            gemm(False, True, <int> n, <int> n_in, <int> n_out, <floating> 1.0,
                 dlt, <int> n_out, &W[0, 0], <int> n_out, <floating> 0.0,
                 &dX[0, 0], <int> n_in)


def dropout(floating[:, ::1] U not None, floating[:, ::1] A not None,
            floating[:, ::1] D not None, floating[:, ::1] G not None, double rate):
    """Inverted dropout folded into a layer's output and caches.

    U holds uniform draws in [0, 1) on entry and the mask m on exit: m = 1/(1-rate)
    where U >= rate, else 0. A, D and G (G may be empty) are multiplied by m, so
    backward needs no extra step: delta = upstream * D * m and dscale = upstream * G * m.
    IN/OUT: U, A, D, G (all (B, O)).
    """
    cdef Py_ssize_t n = A.shape[0], n_out = A.shape[1], i, j
    cdef bint has_gate = G.shape[0] > 0
    cdef floating keep = <floating> (1.0 / (1.0 - rate)), m
    cdef floating threshold = <floating> rate
    check_matrix(U, n, n_out, "U")
    check_matrix(D, n, n_out, "D")
    check_matrix(G, n, n_out, "G", optional=True)
    with nogil:
        for i in range(n):
            for j in range(n_out):
                m = keep if U[i, j] >= threshold else 0
                U[i, j] = m
                A[i, j] *= m
                D[i, j] *= m
                if has_gate:
                    G[i, j] *= m


_ROUTES = ("auto", "blas", "own")


cdef int route(str function, str path) except -1:
    """The index in _ROUTES of a ``path`` argument, or ValueError naming ``function``."""
    if path not in _ROUTES:
        raise ValueError(f"{function}: path must be 'auto', 'blas' or 'own', got {path!r}")
    return _ROUTES.index(path)


def matmul(const floating[:, ::1] A not None, const floating[:, ::1] B not None,
           floating[:, ::1] C not None, bint trans_a=False, bint trans_b=False,
           double alpha=1.0, double beta=0.0, str path="auto"):
    """C = alpha * op(A) . op(B) + beta * C by the product the kernels use.

    path: "auto" (bpcore's own loops for small products, BLAS for the rest, as in
    every kernel), "blas" or "own" (the own loops at any size they can take). For
    tests and benches/small_gemm.py. Shapes are checked; C must not share memory
    with A or B (not checked).
    """
    cdef int m = C.shape[0], n = C.shape[1]
    cdef int k = A.shape[0] if trans_a else A.shape[1]
    cdef int how = route("matmul", path)
    if ((A.shape[1] if trans_a else A.shape[0]) != m
            or (B.shape[0] if trans_b else B.shape[1]) != n
            or (B.shape[1] if trans_b else B.shape[0]) != k):
        raise ValueError(
            f"matmul: op(A) {A.shape[1] if trans_a else A.shape[0]}x{k}, op(B) "
            f"{B.shape[1] if trans_b else B.shape[0]}x"
            f"{B.shape[0] if trans_b else B.shape[1]} and C {m}x{n} do not agree")
    if path == "own" and not own_can_take(trans_a, trans_b, m, n, k):
        raise ValueError(
            f"matmul: the own loops cannot take this product (their scratch holds "
            f"{BP_SMALL_SCRATCH} entries: B^T is copied unless m <= 8, and B's last "
            f"n % 8 columns need k <= {SMALL_DEPTH}); got m={m}, n={n}, k={k}")
    if m == 0 or n == 0:
        return
    cdef const floating* a = &A[0, 0] if A.shape[0] * A.shape[1] > 0 else NULL
    cdef const floating* b = &B[0, 0] if B.shape[0] * B.shape[1] > 0 else NULL
    cdef int lda = max(A.shape[1], 1), ldb = max(B.shape[1], 1)
    with nogil:
        if how == 1:
            blas_gemm(trans_a, trans_b, m, n, k, <floating> alpha, a, lda, b, ldb,
                      <floating> beta, &C[0, 0], n)
        elif how == 2:
            own_gemm(trans_a, trans_b, m, n, k, <floating> alpha, a, lda, b, ldb,
                     <floating> beta, &C[0, 0], n)
        else:
            gemm(trans_a, trans_b, m, n, k, <floating> alpha, a, lda, b, ldb,
                 <floating> beta, &C[0, 0], n)


#: the rule's constants (src/_blas.pxd): the own loops' scratch entries, the deepest
#: product whose last columns fit it transposed, the most rows of a skinny batch, and
#: the widest product the fused rule extends to
SMALL_SCRATCH = BP_SMALL_SCRATCH
SMALL_PRODUCT_DEPTH = SMALL_DEPTH
SKINNY_ROWS = SKINNY
FUSED_PRODUCT_COLUMNS = FUSED_COLUMNS


def small_product_limit():
    """The most multiply-adds (m * n * k) of a product that bpcore's own loops compute
    instead of BLAS on this CPU: 262144 without AVX-512 (half that for delta.W^T),
    4096 with it, and on the portable path (see src/_kernels.c). Without AVX-512 they also take products of any
    size whose batch has at most 8 rows (src/_blas.pxd), where their scratch allows."""
    return bp_small_work_limit()


def takes_own_loops(bint trans_a, bint trans_b, long m, long n, long k):
    """Whether ``gemm`` computes this product (C m x n, inner dimension k) with
    bpcore's own loops on this CPU rather than BLAS (see small_product in
    src/_blas.pxd)."""
    return small_product(trans_a, trans_b, m, n, k)


def fused_product_limit():
    """The most multiply-adds of a layer's product whose store carries an epilogue
    that the own loops compute beyond small_product_limit(), for 16, 24 or 32 columns
    (at most FUSED_PRODUCT_COLUMNS; delta . W^T above 8 rows; see fused_product in
    src/_blas.pxd): 262144 with AVX-512, 0 (no further) elsewhere and on the
    portable path (see src/_kernels.c)."""
    return bp_fused_work_limit()


def takes_fused_loops(bint trans_b, long m, long n, long k):
    """Whether the training engine computes a layer's product X . W (C m x n, inner
    dimension k) with its bias and activation, or delta . W^T (trans_b) with the
    derivative of the layer below, in bpcore's own loops on this CPU (see
    fused_product in src/_blas.pxd)."""
    return fused_product(trans_b, m, n, k)


def layer_forward(const floating[:, ::1] X not None, const floating[:, ::1] W not None,
                  const floating[::1] b not None, floating[:, ::1] A not None,
                  floating[:, ::1] D not None, int kind, double slope=0.01,
                  str path="auto"):
    """A = f(X . W + b) and D = f'(X . W + b) (D with no rows: not written), for f
    identity (0), relu (3) or leaky relu (4, ``slope``), by one of the training
    engine's two routes: "own" the own loops with the bias and activation in their
    store, "blas" BLAS's product and then the bias-activation pass, "auto" the one
    the engine takes on this CPU (takes_fused_loops). For tests and
    benches/fused_gemm.py. Shapes are checked; outputs must not share memory with the
    inputs (not checked)."""
    cdef long n = X.shape[0], n_in = X.shape[1], n_out = W.shape[1]
    route("layer_forward", path)
    if kind not in (0, 3, 4):
        raise ValueError(f"layer_forward: kind must be 0 (identity), 3 (relu) or 4 "
                         f"(leaky relu), got {kind}")
    check_matrix(W, n_in, n_out, "W")
    check_vector(b, n_out, "b")
    check_matrix(A, n, n_out, "A")
    check_matrix(D, n, n_out, "D", optional=True)
    if path == "own" and not own_can_take(False, False, n, n_out, n_in):
        raise ValueError(f"layer_forward: the own loops cannot take a {n} x {n_out} "
                         f"product over {n_in} inputs")
    if n == 0 or n_out == 0:
        return
    cdef bint own = path == "own" or (path == "auto" and fused_product(False, n, n_out, n_in))
    cdef floating* d = data_or_null(D)
    cdef const floating* x = &X[0, 0] if n_in > 0 else NULL
    cdef const floating* w = &W[0, 0] if n_in > 0 else NULL
    with nogil:
        if own:
            small_dense_forward(n, n_out, n_in, x, w, &b[0], &A[0, 0], d, kind, slope)
        else:
            blas_gemm(False, False, <int> n, <int> n_out, <int> n_in, <floating> 1.0, x,
                      <int> max(n_in, 1), w, <int> n_out, <floating> 0.0, &A[0, 0],
                      <int> n_out)
            bias_activation(n, n_out, &A[0, 0], &b[0], NULL, NULL, d, NULL, kind, slope)


def layer_delta(const floating[:, ::1] delta not None, const floating[:, ::1] W not None,
                const floating[:, ::1] M not None, floating[:, ::1] out not None,
                floating[::1] colsum not None, bint relu_output=False,
                floating[:, ::1] dX=None, floating[::1] Wt=None, str path="auto"):
    """out = (delta . W^T) * M and colsum = its column sums (overwritten): dL/dX of a
    layer (W is n_in x n_out) through the derivative cache M of the layer below, and
    that layer's bias gradient. relu_output: M is the output of a ReLU layer below
    instead, and out = delta . W^T where M > 0, 0 elsewhere. By one of the training
    engine's two routes: "own" the own loops with all that in their store, "blas"
    BLAS's product into ``dX`` (n x n_in, needed by this route) and then the delta
    pass into ``out`` (with ``Wt``, an n_out x n_in buffer, BLAS
    multiplies by a copy of W^T written there, as the engine does where OpenBLAS's
    small kernels refuse the transposed product), "auto" the one the engine takes on
    this CPU (takes_fused_loops). The "blas" route reads M as a derivative cache even
    with relu_output (what the engine's forward pass then writes). For tests and
    benches/fused_gemm.py. Shapes are checked; outputs must not share memory with the
    inputs (not checked)."""
    cdef long n = delta.shape[0], n_out = delta.shape[1], n_in = W.shape[0]
    route("layer_delta", path)
    check_matrix(W, n_in, n_out, "W")
    check_matrix(M, n, n_in, "M")
    check_matrix(out, n, n_in, "out")
    check_vector(colsum, n_in, "colsum")
    if Wt is not None:
        check_vector(Wt, n_in * n_out, "Wt")
    if dX is not None:
        check_matrix(dX, n, n_in, "dX")
    if path == "own" and not own_can_take(False, True, n, n_in, n_out):
        raise ValueError(f"layer_delta: the own loops cannot take a {n} x {n_in} "
                         f"product over {n_out} columns of delta")
    if n == 0 or n_in == 0 or n_out == 0:
        # nothing to multiply: out = 0 . M, and colsum the sums of no rows
        out[:, :] = 0
        colsum[:] = 0
        return
    cdef bint own = path == "own" or (path == "auto" and fused_product(True, n, n_in, n_out))
    if not own and dX is None:
        raise ValueError("layer_delta: the BLAS route needs dX, an (n, n_in) buffer for "
                         "its product")
    cdef floating* wt = &Wt[0] if Wt is not None and Wt.shape[0] > 0 else NULL
    cdef floating* dx = &dX[0, 0] if dX is not None else NULL
    with nogil:
        if own:
            small_delta_back(n, n_in, n_out, &delta[0, 0], &W[0, 0], &M[0, 0],
                             &out[0, 0], &colsum[0], relu_output)
        else:
            if wt != NULL:
                transpose(n_in, n_out, &W[0, 0], wt)
                blas_gemm(False, False, <int> n, <int> n_in, <int> n_out,
                          <floating> 1.0, &delta[0, 0], <int> n_out, wt, <int> n_in,
                          <floating> 0.0, dx, <int> n_in)
            else:
                blas_gemm(False, True, <int> n, <int> n_in, <int> n_out, <floating> 1.0,
                          &delta[0, 0], <int> n_out, &W[0, 0], <int> n_out,
                          <floating> 0.0, dx, <int> n_in)
            delta_and_bias_grad(n, n_in, dx, &M[0, 0], NULL, &out[0, 0], &colsum[0],
                                NULL, True)
