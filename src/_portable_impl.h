/* The portable path's small products and fused output layer: what
 * _small_gemm_impl.h and _output_loss_impl.h compute, as plain C99 loops (no vector
 * extensions, no register blocks). Instantiated by _kernels.c with T = float or
 * double when BP_VECTOR is 0; no include guard.
 *
 * Every entry of a product is summed over p in order from 0, one multiply-add at a
 * time; the vector loops sum some products in other orders (lanes, even and odd p),
 * so the two paths agree to rounding, not bit for bit. The stores, epilogues and
 * special values are the vector path's: beta 0 writes C without reading it; ReLU
 * writes 0 (not 0 * z) for z <= 0.
 */

/* row entries of C summed at a time (the accumulators of one row block) */
#define BP_PORTABLE_COLUMNS 256

/* op(A)[i, p] and op(B)[p, j] for the row-major operands of bp_small_gemm */
#define BP_OP_A(i, p) (trans_a ? A[(p) * lda + (i)] : A[(i) * lda + (p)])
#define BP_OP_B(p, j) (trans_b ? B[(j) * ldb + (p)] : B[(p) * ldb + (j)])

/* C (m x n, rows ldc apart) = alpha * op(A) . op(B) + beta * C (see _small_gemm_impl.h;
 * beta 0: C only written). Bt is not used: the plain loops need no scratch. */
BP_KERNEL void NAME(bp_small_gemm)(
        int trans_a, int trans_b, long m, long n, long k, T alpha, const T *A, long lda,
        const T *B, long ldb, T beta, T *C, long ldc, T *Bt) {
    T acc[BP_PORTABLE_COLUMNS];
    (void) Bt;
    for (long i = 0; i < m; i++) {
        for (long j0 = 0; j0 < n; j0 += BP_PORTABLE_COLUMNS) {
            const long width = n - j0 < BP_PORTABLE_COLUMNS ? n - j0 : BP_PORTABLE_COLUMNS;
            for (long j = 0; j < width; j++) acc[j] = 0;
            for (long p = 0; p < k; p++) {
                const T a = BP_OP_A(i, p);
                for (long j = 0; j < width; j++) acc[j] += a * BP_OP_B(p, j0 + j);
            }
            T *c = C + i * ldc + j0;
            for (long j = 0; j < width; j++)
                c[j] = beta == 0 ? alpha * acc[j] : beta * c[j] + alpha * acc[j];
        }
    }
}

#undef BP_OP_A
#undef BP_OP_B

/* C = f(A.B + bias) with D = f'(...) (D may be NULL), f relu, leaky relu (slope) or
 * identity; A m x k, B k x n, C and D m x n, all contiguous (see
 * bp_small_dense_forward in _small_gemm_impl.h). */
BP_KERNEL void NAME(bp_small_dense_forward)(
        long m, long n, long k, const T *A, const T *B, const T *bias, T *C, T *D,
        int act, T slope, T *Bt) {
    NAME(bp_small_gemm)(0, 0, m, n, k, 1, A, k, B, n, 0, C, n, Bt);
    for (long i = 0; i < m; i++)
        for (long j = 0; j < n; j++) {
            const T z = C[i * n + j] + bias[j];
            T a = z, d = 1;
            if (act == BP_RELU) {
                a = z > 0 ? z : (T) 0;
                d = z > 0 ? (T) 1 : (T) 0;
            } else if (act == BP_LEAKY_RELU) {
                a = z > 0 ? z : slope * z;
                d = z > 0 ? (T) 1 : slope;
            }
            C[i * n + j] = a;
            if (D) D[i * n + j] = d;
        }
}

/* C = (A.B^T) * M and colsum = its column sums (overwritten); A m x k, B n x k, C and
 * M m x n. relu_output: C = A.B^T where M > 0, 0 elsewhere (see
 * bp_small_delta_back in _small_gemm_impl.h). */
BP_KERNEL void NAME(bp_small_delta_back)(
        long m, long n, long k, const T *A, const T *B, const T *M, T *C, T *colsum,
        int relu_output, T *Bt) {
    NAME(bp_small_gemm)(0, 1, m, n, k, 1, A, k, B, k, 0, C, n, Bt);
    for (long j = 0; j < n; j++) colsum[j] = 0;
    for (long i = 0; i < m; i++)
        for (long j = 0; j < n; j++) {
            const T s = C[i * n + j], mask = M[i * n + j];
            const T d = relu_output ? (mask > 0 ? s : (T) 0) : s * mask;
            C[i * n + j] = d;
            colsum[j] += d;
        }
}

/* The one-unit identity output layer under the unweighted squared error, forward and
 * backward in one call (see bp_unit_mse in _output_loss_impl.h): the same outputs,
 * for the same k (bp_unit_mse_fits; returns -1, nothing written, else). */
BP_KERNEL double NAME(bp_unit_mse)(
        long m, long k, const T *A, const T *w, const T *b, const T *target, double scale,
        T *out, T *grad, const T *M, int relu_output, T *delta, T *colsum, T *dW, T *db) {
    const double c = 2.0 * scale;
    double sum = 0;
    T gb = 0;
    if (!bp_unit_mse_fits(k, (long) sizeof(T)))
        return -1;
    for (long i = 0; i < m; i++) {
        T o = 0;
        for (long p = 0; p < k; p++) o += A[i * k + p] * w[p];
        o += b[0];
        out[i] = o;
        const double r = (double) o - (double) target[i];
        sum += r * r;
        const T g = (T) (c * r);
        grad[i] = g;
        gb += g;
    }
    for (long p = 0; p < k; p++) {
        dW[p] = 0;
        colsum[p] = 0;
    }
    for (long i = 0; i < m; i++) {
        const T g = grad[i];
        for (long p = 0; p < k; p++) {
            const T mask = M[i * k + p], gw = g * w[p];
            const T d = relu_output ? (mask > 0 ? gw : (T) 0) : gw * mask;
            dW[p] += g * A[i * k + p];
            delta[i * k + p] = d;
            colsum[p] += d;
        }
    }
    *db = gb;
    return scale * sum;
}

#undef BP_PORTABLE_COLUMNS
