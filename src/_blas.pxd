# Row-major matrix products: small ones by bpcore's own loops (_small_gemm_impl.h),
# the rest through SciPy's BLAS (nogil, no allocation).
#
# bpcore stores every matrix C-contiguous (row-major). BLAS is column-major, and a
# row-major matrix read as column-major is its transpose, so the row-major product
# C = op(A) . op(B) is computed as the column-major product C^T = op(B)^T . op(A)^T:
# the operands swap places and nothing is copied.
#
# IN:  a, b (never written; BLAS's prototypes lack `const`, hence the casts).
# OUT: c, which must not alias a or b.
from cython cimport floating

# (the kernels' table, and SciPy's BLAS routines of scipy.linalg.cython_blas: a module
# that cimports these calls _loops.import_kernels(), which loads both)
cdef extern from "_loops.h" nogil:
    void sgemm "bp_sgemm"(char* transa, char* transb, int* m, int* n, int* k, float* alpha,
                          float* a, int* lda, float* b, int* ldb, float* beta, float* c,
                          int* ldc)
    void dgemm "bp_dgemm"(char* transa, char* transb, int* m, int* n, int* k,
                          double* alpha, double* a, int* lda, double* b, int* ldb,
                          double* beta, double* c, int* ldc)
    void saxpy "bp_saxpy"(int* n, float* alpha, float* x, int* incx, float* y, int* incy)
    void daxpy "bp_daxpy"(int* n, double* alpha, double* x, int* incx, double* y, int* incy)
    enum: BP_SMALL_SCRATCH
    long bp_small_work_limit()
    long bp_fused_work_limit()
    void bp_small_gemm_f32(int trans_a, int trans_b, long m, long n, long k, float alpha,
                           const float* A, long lda, const float* B, long ldb, float beta,
                           float* C, long ldc, float* Bt)
    void bp_small_gemm_f64(int trans_a, int trans_b, long m, long n, long k,
                           double alpha, const double* A, long lda, const double* B,
                           long ldb, double beta, double* C, long ldc, double* Bt)

cdef enum:
    SMALL_DEPTH = 512      # k at most for B's last columns, transposed, to fit the scratch
    SKINNY = 8             # a batch of at most this many rows is "skinny" (see below)
    FUSED_COLUMNS = 32     # the widest product the fused rule extends to (fused_product)


cdef inline bint own_can_take(bint trans_a, bint trans_b, long m, long n,
                              long k) noexcept nogil:
    """Whether bpcore's own loops can compute this product with their scratch of
    BP_SMALL_SCRATCH entries: op(B) = B^T is copied unless it is read as dot products
    (trans_a off, m <= 8), and the last n % VL columns of a plain B are copied
    transposed (k <= SMALL_DEPTH; none when n is a multiple of 8)."""
    if trans_b:
        return (m <= SKINNY and not trans_a) or n * k <= BP_SMALL_SCRATCH
    return trans_a or n % 8 == 0 or k <= SMALL_DEPTH


cdef inline bint small_product(bint trans_a, bint trans_b, long m, long n,
                               long k) noexcept nogil:
    """Whether bpcore's own loops compute this product instead of BLAS: they can take
    it (own_can_take) and either it has at most bp_small_work_limit() multiply-adds
    (2^18 without AVX-512, half that for delta.W^T, whose W^T the own loops copy
    first; 4096 with AVX-512 or on the portable path; see _kernels.c) or, without AVX-512, the
    batch is skinny: at most SKINNY rows of X or delta (m, or k for X^T.delta).
    OpenBLAS's Haswell kernels pack their operands for every call, which costs more
    than the arithmetic of a product with so few rows (784 x 256 weights at batch 1:
    several times the own loops' time). The crossover is measured by
    benches/small_gemm.py and listed in the README."""
    cdef long limit = bp_small_work_limit()
    if not own_can_take(trans_a, trans_b, m, n, k):
        return False
    if limit > 4096 and (k if trans_a else m) <= SKINNY:
        return True
    if trans_b and limit > 4096:
        limit //= 2
    return m * n * k <= limit


cdef inline bint fused_product(bint trans_b, long m, long n, long k) noexcept nogil:
    """Whether a layer's product whose store carries an epilogue (forward: X . W with
    the bias and activation; backward: delta . W^T, trans_b, with the derivative of
    the layer below and its bias gradient) is computed by bpcore's own loops with that
    epilogue: where small_product holds, and also where bp_fused_work_limit() (2^18
    with AVX-512, else 0: see _kernels.c) allows a product of at most that many
    multiply-adds whose n columns are 16, 24 or 32 (whole vectors of either type, at
    most FUSED_COLUMNS), and, for delta . W^T, of more than SKINNY rows: the shapes
    benches/fused_gemm.py found the own route faster on (at 10 or 64 columns it lost
    by up to 1.86x and 1.23x, at 8 columns in float32 by up to 1.6x, and delta . W^T
    at 8 rows or fewer by 1.5-3.8x)."""
    if small_product(False, trans_b, m, n, k):
        return True
    return ((m > SKINNY or not trans_b) and n % 8 == 0 and 16 <= n <= FUSED_COLUMNS
            and m * n * k <= bp_fused_work_limit() and own_can_take(False, trans_b, m, n, k))


cdef inline void own_gemm(bint trans_a, bint trans_b, int m, int n, int k,
                          floating alpha, const floating* a, int lda,
                          const floating* b, int ldb,
                          floating beta, floating* c, int ldc) noexcept nogil:
    """gemm by bpcore's own loops, where own_can_take holds (not checked)."""
    cdef floating scratch[BP_SMALL_SCRATCH]
    if floating is float:
        bp_small_gemm_f32(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                          scratch)
    else:
        bp_small_gemm_f64(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                          scratch)


cdef inline void blas_gemm(bint trans_a, bint trans_b, int m, int n, int k,
                           floating alpha, const floating* a, int lda,
                           const floating* b, int ldb,
                           floating beta, floating* c, int ldc) noexcept nogil:
    """gemm always through BLAS."""
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


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """C (m x n) = alpha * op(A) (m x k) . op(B) (k x n) + beta * C, row-major."""
    if m == 0 or n == 0:
        return
    if small_product(trans_a, trans_b, m, n, k):
        own_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    else:
        blas_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


cdef inline void blas_axpy(long count, floating alpha, const floating* x,
                           floating* y) noexcept nogil:
    """y[0:count] += alpha * x[0:count] through BLAS, which spreads a long vector over
    its threads (OpenBLAS: above 10,000 entries) where bpcore's own loops run on one."""
    cdef int chunk, one = 1
    cdef long done = 0
    while done < count:
        chunk = <int> min(count - done, 1 << 30)
        if floating is float:
            saxpy(&chunk, &alpha, <float*> (x + done), &one, y + done, &one)
        else:
            daxpy(&chunk, &alpha, <double*> (x + done), &one, y + done, &one)
        done += chunk
