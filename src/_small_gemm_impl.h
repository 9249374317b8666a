/* Matrix products of small layers without BLAS. Instantiated by _kernels.c (vector
 * path) with T = float or double, like _elementwise_impl.h; no include guard.
 *
 * A BLAS call pays a fixed cost (argument checks, buffer set-up, packing) that on a
 * 2-16-16-1 network is larger than its arithmetic: a 100 x 16 x 16 dgemm costs
 * about as much as its own multiply-adds again. Below the crossover (small_product in
 * _blas.pxd, bp_small_work_limit in _kernels.c), and for a layer's products with
 * their epilogues a little beyond it on some CPUs (fused_product, bp_fused_work_limit),
 * products run here: register blocks of 3 rows x 4 vectors of 32 bytes
 * (above 8 rows, where a row spans 4 vectors, and for 2 or 3 rows), else of up to 4
 * rows x 2 vectors (one row x up to 8 vectors for a single row), accumulated
 * in registers over the whole inner dimension and written once (a layer's forward
 * with one or two inputs and at most 4 vectors of outputs: B in registers, row by
 * row, bp_tiny_k_rows: W1's first layer 2-3% faster a step),
 * with GCC's vector extensions so that one source serves every clone of
 * target_clones (AVX2/FMA, AVX-512 with 32-byte vectors, and the SSE2 baseline, which
 * splits each vector in two).
 *
 * C (m x n, row stride ldc) = alpha * op(A) . op(B) + beta * C, row-major, where
 * op(A) is A (m x k, row stride lda) or A^T (A stored k x m) and op(B) is B (k x n)
 * or B^T (B stored n x k). beta is 0 (C is only written: NaN in C does not
 * propagate) or anything else (C is read). C must not alias A or B.
 */

typedef T NAME(bp_vec) __attribute__((vector_size(32), aligned(sizeof(T)), may_alias));
typedef ITYPE NAME(bp_ivec) __attribute__((vector_size(32), aligned(sizeof(T)), may_alias));
#define BP_VL ((long) (32 / sizeof(T)))
#define BP_ROWS 4

/* What is stored instead of alpha * product + beta * C (NN products only, alpha 1,
 * beta 0), so that a layer's next pass happens while the block is in registers:
 *   BP_EP_FORWARD  z = product + bias[j]; C = f(z) and D = f'(z) (D may be NULL) for
 *                  f = relu, leaky relu or identity, exactly as bp_bias_activation;
 *   BP_EP_DELTA    C = product * M (the derivative cache of the layer below), or
 *                  with act BP_RELU, C = product where M > 0 and 0 elsewhere (M the
 *                  output of a ReLU layer below: its derivative without a cache),
 *                  and colsum[j] += that (the bias gradient; zero it first).
 * D and M are laid out like C (rows ldc apart). */
typedef struct {
    int kind, act;
    T slope;
    const T *bias;
    T *D;
    const T *M;
    T *colsum;
} NAME(bp_epilogue);

/* BP_EP_DELTA's value from the product's vector s and M's vector m. */
static inline BP_INLINE NAME(bp_vec) NAME(bp_delta_vector)(
        const NAME(bp_epilogue) *ep, NAME(bp_vec) s, NAME(bp_vec) m) {
    if (ep->act == BP_RELU)
        return (NAME(bp_vec)) ((NAME(bp_ivec)) (m > 0) & (NAME(bp_ivec)) s);
    return s * m;
}

/* Store C[i, j:j+VL] (and the epilogue's outputs) from the product's vector s. */
static inline BP_INLINE void NAME(bp_store_vector)(
        const NAME(bp_epilogue) *ep, T *restrict C, long ldc, long i, long j,
        NAME(bp_vec) s, T alpha, T beta) {
    typedef NAME(bp_vec) V;
    typedef NAME(bp_ivec) IV;
    V *c = (V *) (C + i * ldc + j);
    if (!ep) {
        if (beta == 0)
            *c = alpha * s;
        else
            *c = beta * *c + alpha * s;
    } else if (ep->kind == BP_EP_FORWARD) {
        const V z = s + *(const V *) (ep->bias + j);
        const IV pos = (IV) (z > 0);
        V one = (V) {0} + 1, a = z, d = one;
        if (ep->act == BP_RELU) {
            a = (V) (pos & (IV) z);
            d = (V) (pos & (IV) one);
        } else if (ep->act == BP_LEAKY_RELU) {
            const V low = ep->slope * z, slope = (V) {0} + ep->slope;
            a = (V) ((pos & (IV) z) | (~pos & (IV) low));
            d = (V) ((pos & (IV) one) | (~pos & (IV) slope));
        }
        *c = a;
        if (ep->D) *(V *) (ep->D + i * ldc + j) = d;
    } else {
        const V d = NAME(bp_delta_vector)(ep, s, *(const V *) (ep->M + i * ldc + j));
        *c = d;
        *(V *) (ep->colsum + j) += d;
    }
}

/* Store C[i, j] (and the epilogue's outputs) from the product's value s. */
static inline BP_INLINE void NAME(bp_store_one)(
        const NAME(bp_epilogue) *ep, T *restrict C, long ldc, long i, long j, T s,
        T alpha, T beta) {
    T *c = C + i * ldc + j;
    if (!ep) {
        *c = beta == 0 ? alpha * s : beta * *c + alpha * s;
    } else if (ep->kind == BP_EP_FORWARD) {
        const T z = s + ep->bias[j];
        T a = z, d = 1;
        if (ep->act == BP_RELU) {
            a = z > 0 ? z : (T) 0;
            d = z > 0 ? (T) 1 : (T) 0;
        } else if (ep->act == BP_LEAKY_RELU) {
            a = z > 0 ? z : ep->slope * z;
            d = z > 0 ? (T) 1 : ep->slope;
        }
        *c = a;
        if (ep->D) ep->D[i * ldc + j] = d;
    } else {
        const T m = ep->M[i * ldc + j];
        const T d = ep->act == BP_RELU ? (m > 0 ? s : (T) 0) : s * m;
        *c = d;
        ep->colsum[j] += d;
    }
}

/* The block C[i0:i0+MR, j0:j0+NV*VL] (MR <= 4, NV <= 8; MR * NV <= 12 keeps it in
 * registers) with a(i, p) = A[i * ra + p * ca] and b(p, :) = B[p * ldb], A and B
 * already offset to the block. */
static inline BP_INLINE void NAME(bp_gemm_block)(
        const int MR, const int NV, long k, const T *restrict A, long ra, long ca,
        const T *restrict B, long ldb, T *restrict C, long ldc, long i0, long j0,
        T alpha, T beta, const NAME(bp_epilogue) *ep) {
    typedef NAME(bp_vec) V;
    V acc[4][8];
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) acc[r][v] = (V) {0};
    long p = 0;
    if (MR == 1 && NV <= 4) {
        /* one row of at most 4 vectors: 4 chains of multiply-adds would wait on their
         * latency (a long k: X^T.delta at one output column, A^T.b); even and odd p
         * go to two sets of sums, added at the end */
        V odd[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) odd[v] = (V) {0};
        for (; p + 2 <= k; p += 2) {
            const T a0 = A[p * ca], a1 = A[(p + 1) * ca];
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                acc[0][v] += a0 * *(const V *) (B + p * ldb + v * BP_VL);
                odd[v] += a1 * *(const V *) (B + (p + 1) * ldb + v * BP_VL);
            }
        }
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[0][v] += odd[v];
    }
    for (; p < k; p++) {
        V b[8];
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) b[v] = *(const V *) (B + p * ldb + v * BP_VL);
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            const T a = A[r * ra + p * ca];
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];
        }
    }
    if (ep && ep->kind == BP_EP_DELTA) {
        /* the block's rows summed in registers: one update of colsum per vector,
         * not one per row (a chain of stores and reloads of the same entries) */
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            const long j = j0 + v * BP_VL;
            V sum = (V) {0};
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++) {
                const long at = (i0 + r) * ldc + j;
                const V d = NAME(bp_delta_vector)(ep, acc[r][v], *(const V *) (ep->M + at));
                *(V *) (C + at) = d;
                sum += d;
            }
            *(V *) (ep->colsum + j) += sum;
        }
        return;
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++)
            NAME(bp_store_vector)(ep, C, ldc, i0 + r, j0 + v * BP_VL, acc[r][v], alpha,
                                  beta);
}

/* The sums of the lanes of a0..a3 into sum[0..3]: pairwise shuffles instead of
 * four chains of scalar adds. */
static inline BP_INLINE void NAME(bp_hsum4)(
        NAME(bp_vec) a0, NAME(bp_vec) a1, NAME(bp_vec) a2, NAME(bp_vec) a3, T *sum) {
#if BP_LANES == 4 && (defined(__clang__) || __GNUC__ >= 12)
    /* [a0 01, a1 01, a0 23, a1 23] and the same of a2, a3; then across the halves */
    const NAME(bp_vec) u = __builtin_shufflevector(a0, a1, 0, 4, 2, 6)
                           + __builtin_shufflevector(a0, a1, 1, 5, 3, 7);
    const NAME(bp_vec) w = __builtin_shufflevector(a2, a3, 0, 4, 2, 6)
                           + __builtin_shufflevector(a2, a3, 1, 5, 3, 7);
    const NAME(bp_vec) x = __builtin_shufflevector(u, w, 0, 1, 4, 5)
                           + __builtin_shufflevector(u, w, 2, 3, 6, 7);
    for (int r = 0; r < 4; r++) sum[r] = x[r];
#elif BP_LANES == 8 && (defined(__clang__) || __GNUC__ >= 12)
    const NAME(bp_vec) u = __builtin_shufflevector(a0, a1, 0, 8, 2, 10, 4, 12, 6, 14)
                           + __builtin_shufflevector(a0, a1, 1, 9, 3, 11, 5, 13, 7, 15);
    const NAME(bp_vec) w = __builtin_shufflevector(a2, a3, 0, 8, 2, 10, 4, 12, 6, 14)
                           + __builtin_shufflevector(a2, a3, 1, 9, 3, 11, 5, 13, 7, 15);
    /* lanes: the sums of a0..a3 over lanes 0-3, then over lanes 4-7 */
    const NAME(bp_vec) x = __builtin_shufflevector(u, w, 0, 1, 8, 9, 4, 5, 12, 13)
                           + __builtin_shufflevector(u, w, 2, 3, 10, 11, 6, 7, 14, 15);
    const NAME(bp_vec) y = x + __builtin_shufflevector(x, x, 4, 5, 6, 7, 0, 1, 2, 3);
    for (int r = 0; r < 4; r++) sum[r] = y[r];
#else
    for (int r = 0; r < 4; r++) sum[r] = 0;
    for (long q = 0; q < BP_VL; q++) {
        sum[0] += a0[q];
        sum[1] += a1[q];
        sum[2] += a2[q];
        sum[3] += a3[q];
    }
#endif
}

/* sum_p a[p] * b[p] over the first kv entries (kv a multiple of the vector width):
 * two vector sums over alternate vectors, added, then their lanes in order. */
static inline BP_INLINE T NAME(bp_dot_vectors)(const T *restrict a, const T *restrict b,
                                               long kv) {
    typedef NAME(bp_vec) V;
    V acc0 = (V) {0}, acc1 = (V) {0};
    long p = 0;
    for (; p + 2 * BP_VL <= kv; p += 2 * BP_VL) {
        acc0 += *(const V *) (a + p) * *(const V *) (b + p);
        acc1 += *(const V *) (a + p + BP_VL) * *(const V *) (b + p + BP_VL);
    }
    if (p < kv) acc0 += *(const V *) (a + p) * *(const V *) (b + p);
    acc0 += acc1;
    T s = 0;
    for (long q = 0; q < BP_VL; q++) s += acc0[q];
    return s;
}

/* Columns [j0, n) of C, fewer than one vector wide, as dot products over p:
 * c(i, j) = sum_p A[i * lda + p] * Bt[(j - j0) * ldbt + p], both contiguous in p;
 * four rows at a time, whose sums are reduced together. */
static inline BP_INLINE void NAME(bp_gemm_dots)(
        long m, long j0, long n, long k, const T *restrict A, long lda,
        const T *restrict Bt, long ldbt, T *restrict C, long ldc, T alpha, T beta,
        const NAME(bp_epilogue) *ep) {
    typedef NAME(bp_vec) V;
    const long kv = k - k % BP_VL;
    long i = 0;
    for (; i + 4 <= m; i += 4) {
        const T *restrict a = A + i * lda;
        for (long j = j0; j < n; j++) {
            const T *restrict b = Bt + (j - j0) * ldbt;
            V acc0 = (V) {0}, acc1 = (V) {0}, acc2 = (V) {0}, acc3 = (V) {0};
            for (long p = 0; p < kv; p += BP_VL) {
                const V bv = *(const V *) (b + p);
                acc0 += *(const V *) (a + p) * bv;
                acc1 += *(const V *) (a + lda + p) * bv;
                acc2 += *(const V *) (a + 2 * lda + p) * bv;
                acc3 += *(const V *) (a + 3 * lda + p) * bv;
            }
            T s[4];
            NAME(bp_hsum4)(acc0, acc1, acc2, acc3, s);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                T t = s[r];
                for (long p = kv; p < k; p++) t += a[r * lda + p] * b[p];
                NAME(bp_store_one)(ep, C, ldc, i + r, j, t, alpha, beta);
            }
        }
    }
    for (; i < m; i++) {
        const T *restrict a = A + i * lda;
        for (long j = j0; j < n; j++) {
            const T *restrict b = Bt + (j - j0) * ldbt;
            T s = NAME(bp_dot_vectors)(a, b, kv);
            for (long p = kv; p < k; p++) s += a[p] * b[p];
            NAME(bp_store_one)(ep, C, ldc, i, j, s, alpha, beta);
        }
    }
}

/* Columns [j0, n) of C = alpha * A^T.B + beta * C, fewer than one vector wide, with
 * the vectors along the rows of C (A^T's rows are A's contiguous columns). */
static inline BP_INLINE void NAME(bp_gemm_tn_tail)(
        long m, long j0, long n, long k, const T *restrict A, long lda,
        const T *restrict B, long ldb, T *restrict C, long ldc, T alpha, T beta) {
    typedef NAME(bp_vec) V;
    for (long j = j0; j < n; j++) {
        long i = 0;
        for (; i + BP_VL <= m; i += BP_VL) {
            V acc = (V) {0};
            for (long p = 0; p < k; p++)
                acc += B[p * ldb + j] * *(const V *) (A + p * lda + i);
            for (long q = 0; q < BP_VL; q++)
                NAME(bp_store_one)(NULL, C, ldc, i + q, j, acc[q], alpha, beta);
        }
        for (; i < m; i++) {
            T s = 0;
            for (long p = 0; p < k; p++) s += A[p * lda + i] * B[p * ldb + j];
            NAME(bp_store_one)(NULL, C, ldc, i, j, s, alpha, beta);
        }
    }
}

/* Bt (k x n, row-major) = B^T for B n x k with rows ldb apart. With 4 lanes, 4 x 4
 * tiles go through registers (four loads, eight shuffles, four stores: a scalar copy
 * of W^T cost 180 ns of a 100 x 16 x 16 delta product); the rest entry by entry. */
static inline BP_INLINE void NAME(bp_transpose_copy)(
        long n, long k, const T *restrict B, long ldb, T *restrict Bt) {
    long j0 = 0;
#if BP_LANES == 4 && (defined(__clang__) || __GNUC__ >= 12)
    typedef NAME(bp_vec) V;
    const long n4 = n - n % 4, k4 = k - k % 4;
    for (long jj = 0; jj < n4; jj += 4)
        for (long p = 0; p < k4; p += 4) {
            const V r0 = *(const V *) (B + jj * ldb + p);
            const V r1 = *(const V *) (B + (jj + 1) * ldb + p);
            const V r2 = *(const V *) (B + (jj + 2) * ldb + p);
            const V r3 = *(const V *) (B + (jj + 3) * ldb + p);
            const V t0 = __builtin_shufflevector(r0, r1, 0, 4, 2, 6);
            const V t1 = __builtin_shufflevector(r0, r1, 1, 5, 3, 7);
            const V t2 = __builtin_shufflevector(r2, r3, 0, 4, 2, 6);
            const V t3 = __builtin_shufflevector(r2, r3, 1, 5, 3, 7);
            *(V *) (Bt + p * n + jj) = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
            *(V *) (Bt + (p + 1) * n + jj) = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
            *(V *) (Bt + (p + 2) * n + jj) = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
            *(V *) (Bt + (p + 3) * n + jj) = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
        }
    /* the last k % 4 columns of the tiled rows */
    for (long jj = 0; jj < n4; jj++)
        for (long p = k4; p < k; p++) Bt[p * n + jj] = B[jj * ldb + p];
    j0 = n4;
#endif
    for (long jj = j0; jj < n; jj++)
        for (long p = 0; p < k; p++) Bt[p * n + jj] = B[jj * ldb + p];
}

/* Rows [0, m) and columns [j0, j0 + NV * VL) of C, in blocks of MR rows. */
#define BP_GEMM_COLUMNS(MR, NV)                                                        \
    for (; j + (NV) * BP_VL <= n; j += (NV) * BP_VL) {                                 \
        long i = 0;                                                                    \
        for (; i + (MR) <= m; i += (MR))                                               \
            NAME(bp_gemm_block)(MR, NV, k, A + i * ra, ra, ca, B + j, ldb, C, ldc, i,  \
                                j, alpha, beta, ep);                                   \
        if ((MR) > 2 && i + 2 <= m) {                                                  \
            NAME(bp_gemm_block)(2, NV, k, A + i * ra, ra, ca, B + j, ldb, C, ldc, i,   \
                                j, alpha, beta, ep);                                   \
            i += 2;                                                                    \
        }                                                                              \
        for (; i < m; i++)                                                             \
            NAME(bp_gemm_block)(1, NV, k, A + i * ra, ra, ca, B + j, ldb, C, ldc, i,   \
                                j, alpha, beta, ep);                                   \
    }

/* A single row across NV vectors, enough independent sums to hide the latency of the
 * multiply-adds (a 1 x 2-vector block waits on it). */
#define BP_GEMM_ROW_COLUMNS(NV)                                                        \
    for (; j + (NV) * BP_VL <= n; j += (NV) * BP_VL)                                   \
        for (long i = 0; i < m; i++)                                                   \
            NAME(bp_gemm_block)(1, NV, k, A + i * ra, ra, ca, B + j, ldb, C, ldc, i,   \
                                j, alpha, beta, ep);

/* The small product (see the top of this file), stored through the epilogue ep
 * (NULL: alpha * product + beta * C; else only with trans_a == 0). Bt: room for
 * BP_SMALL_SCRATCH entries: op(B) as a row-major copy when trans_b and m > 8 (n * k
 * must fit; fewer rows take dot products with B's rows instead, unless trans_a), or
 * the last n % VL columns of B transposed (k <= BP_SMALL_SCRATCH / (VL - 1); also for
 * A^T.b, n == 1, turned into b^T.A where its (m % VL) * k tail entries fit, else
 * A^T.b takes the vectors-along-rows tail, which needs no scratch). */
static inline BP_INLINE void NAME(bp_small_gemm_body)(
        int trans_a, int trans_b, long m, long n, long k, T alpha, const T *A, long lda,
        const T *B, long ldb, T beta, T *C, long ldc, T *Bt,
        const NAME(bp_epilogue) *ep) {
    if (m == 0 || n == 0) return;
    if (!trans_b && n == 1 && trans_a && ldb == 1 && ldc == 1 && !ep
            && (m % BP_VL) * k <= BP_SMALL_SCRATCH) {
        /* C^T (1 x m) = b^T . A: a one-row product whose columns are A's rows (its
         * last m % VL columns are copied transposed into Bt: (m % VL) * k entries) */
        const T *b = B;
        B = A;
        ldb = lda;
        A = b;
        lda = k;
        n = m;
        m = 1;
        ldc = n;
        trans_a = 0;
    }
    const long ra = trans_a ? 1 : lda, ca = trans_a ? lda : 1;
    const T *Bn = B;          /* op(B) row-major, rows ldbn apart */
    long ldbn = ldb, j = 0;
    if (trans_b && !trans_a && m <= 2 * BP_ROWS) {
        /* op(B) = B^T for a few rows: dot products with B's contiguous rows, no copy */
        NAME(bp_gemm_dots)(m, 0, n, k, A, lda, B, ldb, C, ldc, alpha, beta, ep);
        return;
    }
    if (trans_b) {
        /* op(B) = B^T: copy it row-major once, the product reads it m / 4 times */
        NAME(bp_transpose_copy)(n, k, B, ldb, Bt);
        Bn = Bt;
        ldbn = n;
    }
    {
        const T *B = Bn;
        const long ldb = ldbn;
        if (m == 1) {
            BP_GEMM_ROW_COLUMNS(8)
            BP_GEMM_ROW_COLUMNS(4)
        }
        if (m > 2 * BP_ROWS || (m > 1 && m < BP_ROWS)) {
            /* 12 sums in flight (8 for two rows); not for a skinny batch of 4 to 8
             * rows, whose B is streamed once per block of rows: 4 rows at a time read
             * a large B fewer times */
            BP_GEMM_COLUMNS(3, 4)
        }
        BP_GEMM_COLUMNS(BP_ROWS, 2)
        BP_GEMM_COLUMNS(BP_ROWS, 1)
    }
    if (j == n) return;
    if (trans_a) {
        NAME(bp_gemm_tn_tail)(m, j, n, k, A, lda, Bn, ldbn, C, ldc, alpha, beta);
    } else if (trans_b) {
        /* the last columns of op(B) are rows of B: contiguous */
        NAME(bp_gemm_dots)(m, j, n, k, A, lda, B + j * ldb, ldb, C, ldc, alpha, beta,
                           ep);
    } else {
        /* the last columns of B, transposed, so that each is contiguous */
        for (long jj = j; jj < n; jj++)
            for (long p = 0; p < k; p++) Bt[(jj - j) * k + p] = B[p * ldb + jj];
        NAME(bp_gemm_dots)(m, j, n, k, A, lda, Bt, k, C, ldc, alpha, beta, ep);
    }
}

BP_CLONES BP_KERNEL void NAME(bp_small_gemm)(
        int trans_a, int trans_b, long m, long n, long k, T alpha, const T *A, long lda,
        const T *B, long ldb, T beta, T *C, long ldc, T *Bt) {
    if (beta == 0)      /* C only written: the store's test folds away */
        NAME(bp_small_gemm_body)(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, 0, C,
                                 ldc, Bt, NULL);
    else
        NAME(bp_small_gemm_body)(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta,
                                 C, ldc, Bt, NULL);
}

/* The most inputs of a layer whose forward keeps all of B in registers (bp_tiny_k_rows). */
#define BP_TINY_K 2

/* C = A.B stored through the forward epilogue ep, for B of K <= BP_TINY_K rows and
 * NV <= 4 vectors (n = NV vectors exactly): B's rows are loaded once, and each row of
 * C is summed over p in order from 0, as by bp_gemm_block's blocks of rows. */
static inline BP_INLINE void NAME(bp_tiny_k_rows)(
        const int K, const int NV, long m, const T *restrict A, const T *restrict B,
        T *restrict C, const NAME(bp_epilogue) *ep) {
    typedef NAME(bp_vec) V;
    const long n = NV * BP_VL;
    V w[BP_TINY_K][4];
#pragma GCC unroll 2
    for (int p = 0; p < K; p++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) w[p][v] = *(const V *) (B + p * n + v * BP_VL);
    for (long i = 0; i < m; i++) {
        V acc[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[v] = (V) {0};
#pragma GCC unroll 2
        for (int p = 0; p < K; p++) {
            const T a = A[i * K + p];
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[v] += a * w[p][v];
        }
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            NAME(bp_store_vector)(ep, C, n, i, v * BP_VL, acc[v], 1, 0);
    }
}

/* bp_tiny_k_rows for K and n known when it applies (returns 1), else 0. */
static inline BP_INLINE int NAME(bp_tiny_k_forward)(
        long m, long n, long k, const T *A, const T *B, T *C,
        const NAME(bp_epilogue) *ep) {
    if (k > BP_TINY_K || k < 1 || n % BP_VL != 0 || n / BP_VL > 4 || n / BP_VL < 1)
        return 0;
#define BP_TINY_CASE(K, NV)                                                            \
    if (k == (K) && n == (NV) * BP_VL) {                                               \
        NAME(bp_tiny_k_rows)(K, NV, m, A, B, C, ep);                                   \
        return 1;                                                                      \
    }
    BP_TINY_CASE(1, 1) BP_TINY_CASE(1, 2) BP_TINY_CASE(1, 3) BP_TINY_CASE(1, 4)
    BP_TINY_CASE(2, 1) BP_TINY_CASE(2, 2) BP_TINY_CASE(2, 3) BP_TINY_CASE(2, 4)
#undef BP_TINY_CASE
    return 0;
}

/* C = f(A.B + bias) with D = f'(...) (D may be NULL), f relu, leaky relu (slope) or
 * identity: a layer's forward pass in one pass over its output. */
BP_CLONES BP_KERNEL void NAME(bp_small_dense_forward)(
        long m, long n, long k, const T *A, const T *B, const T *bias, T *C, T *D,
        int act, T slope, T *Bt) {
    /* one instance per activation: the store's tests fold away; a one-unit layer
     * (n == 1: B is one contiguous column) as dot products, without the body's
     * copy of B's last columns */
    if (n == 1) {
        const NAME(bp_epilogue) ep = {BP_EP_FORWARD, act, slope, bias, D, NULL, NULL};
        NAME(bp_gemm_dots)(m, 0, 1, k, A, k, B, k, C, 1, 1, 0, &ep);
    } else if (act == BP_RELU) {
        const NAME(bp_epilogue) ep = {BP_EP_FORWARD, BP_RELU, 0, bias, D, NULL, NULL};
        if (!NAME(bp_tiny_k_forward)(m, n, k, A, B, C, &ep))
            NAME(bp_small_gemm_body)(0, 0, m, n, k, 1, A, k, B, n, 0, C, n, Bt, &ep);
    } else if (act == BP_LEAKY_RELU) {
        const NAME(bp_epilogue) ep = {BP_EP_FORWARD, BP_LEAKY_RELU, slope, bias, D, NULL,
                                      NULL};
        if (!NAME(bp_tiny_k_forward)(m, n, k, A, B, C, &ep))
            NAME(bp_small_gemm_body)(0, 0, m, n, k, 1, A, k, B, n, 0, C, n, Bt, &ep);
    } else {
        const NAME(bp_epilogue) ep = {BP_EP_FORWARD, BP_IDENTITY, 0, bias, D, NULL, NULL};
        if (!NAME(bp_tiny_k_forward)(m, n, k, A, B, C, &ep))
            NAME(bp_small_gemm_body)(0, 0, m, n, k, 1, A, k, B, n, 0, C, n, Bt, &ep);
    }
}

/* C = (A.B^T) * M and colsum = its column sums (overwritten): dL/dX of a layer times
 * the derivative cache of the layer below, and that layer's bias gradient, in one
 * pass. A is m x k, B is n x k, C and M are m x n. relu_output: M is instead the
 * output of a ReLU layer, and C = A.B^T where M > 0, 0 elsewhere. */
BP_CLONES BP_KERNEL void NAME(bp_small_delta_back)(
        long m, long n, long k, const T *A, const T *B, const T *M, T *C, T *colsum,
        int relu_output, T *Bt) {
    for (long j = 0; j < n; j++) colsum[j] = 0;
    if (relu_output) {
        const NAME(bp_epilogue) ep = {BP_EP_DELTA, BP_RELU, 0, NULL, NULL, M, colsum};
        NAME(bp_small_gemm_body)(0, 1, m, n, k, 1, A, k, B, k, 0, C, n, Bt, &ep);
    } else {
        const NAME(bp_epilogue) ep = {BP_EP_DELTA, 0, 0, NULL, NULL, M, colsum};
        NAME(bp_small_gemm_body)(0, 1, m, n, k, 1, A, k, B, k, 0, C, n, Bt, &ep);
    }
}
