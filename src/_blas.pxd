# Row-major matrix products through SciPy's BLAS (nogil, no allocation).
#
# bpcore stores every matrix C-contiguous (row-major). BLAS is column-major, and a
# row-major matrix read as column-major is its transpose, so the row-major product
# C = op(A) . op(B) is computed as the column-major product C^T = op(B)^T . op(A)^T:
# the operands swap places and nothing is copied.
#
# IN:  a, b (never written; BLAS's prototypes lack `const`, hence the casts).
# OUT: c, which must not alias a or b.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """C (m x n) = alpha * op(A) (m x k) . op(B) (k x n) + beta * C, row-major."""
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if m == 0 or n == 0:
        return
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*> b, &ldb, <float*> a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*> b, &ldb, <double*> a, &lda,
              &beta, c, &ldc)
