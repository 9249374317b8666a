/* Instantiated by _loops.h with T = float or double; see there. No include guard. */

/* sigmoid by the sign of z: exp never sees a positive argument */
static inline T NAME(bp_sigmoid)(T z) {
    T e = EXP(-(z >= 0 ? z : -z));
    return z >= 0 ? 1 / (1 + e) : e / (1 + e);
}

/* Row-wise pieces of the loops below, inlined into a switch on the row width m so
 * that the common widths compile to straight vector code: per-row loop overhead is
 * what a layer of 16 units pays most for, not arithmetic. */
static inline BP_INLINE void NAME(bp_add_rows)(long n, long m, T *restrict A,
                                                const T *restrict b) {
    for (long i = 0; i < n; i++)
        for (long j = 0; j < m; j++) A[i * m + j] += b[j];
}

/* out[j] (= when first, else +=) sum_i X[i, j] (* Y[i, j] when Y is given) */
static inline BP_INLINE void NAME(bp_column_sums)(long n, long m, const T *restrict X,
                                                   const T *restrict Y, T *restrict out,
                                                   int overwrite) {
    long start = 0;
    if (overwrite) {
        if (n == 0) {
            for (long j = 0; j < m; j++) out[j] = 0;
            return;
        }
        for (long j = 0; j < m; j++) out[j] = Y ? X[j] * Y[j] : X[j];
        start = 1;
    }
    if (Y) {
        for (long i = start; i < n; i++)
            for (long j = 0; j < m; j++) out[j] += X[i * m + j] * Y[i * m + j];
    } else {
        for (long i = start; i < n; i++)
            for (long j = 0; j < m; j++) out[j] += X[i * m + j];
    }
}

/* A = relu-family(A + b) and D = its derivative, one pass per row. relu (leaky 0)
 * writes 0, not 0 * z, for z <= 0: relu(-inf) = 0 and relu(NaN) = 0 as in the
 * flat loops. */
static inline BP_INLINE void NAME(bp_bias_relu_rows)(long n, long m, T *restrict A,
                                                      const T *restrict b,
                                                      T *restrict D, const int leaky,
                                                      T slope) {
    for (long i = 0; i < n; i++) {
        T *restrict a = A + i * m;
        T *restrict d = D + i * m;
        for (long j = 0; j < m; j++) {
            T z = a[j] + b[j];
            d[j] = z > 0 ? (T) 1 : (leaky ? slope : (T) 0);
            a[j] = z > 0 ? z : (leaky ? slope * z : (T) 0);
        }
    }
}

/* delta = upstream * D and db (= when overwrite, else +=) its column sums, one pass.
 * Up to 64 columns the sums stay in registers; wider rows add into db itself, which
 * stays in L1. */
static inline BP_INLINE void NAME(bp_delta_rows)(long n, long m, const T *restrict up,
                                                  const T *restrict D, T *restrict delta,
                                                  T *restrict db, int overwrite) {
    if (m > 64) {
        if (overwrite) for (long j = 0; j < m; j++) db[j] = 0;
        for (long i = 0; i < n; i++)
            for (long j = 0; j < m; j++) {
                T v = up[i * m + j] * D[i * m + j];
                delta[i * m + j] = v;
                db[j] += v;
            }
        return;
    }
    T sums[64];
    for (long j = 0; j < m; j++) sums[j] = 0;
    for (long i = 0; i < n; i++)
        for (long j = 0; j < m; j++) {
            T v = up[i * m + j] * D[i * m + j];
            delta[i * m + j] = v;
            sums[j] += v;
        }
    for (long j = 0; j < m; j++) db[j] = overwrite ? sums[j] : db[j] + sums[j];
}

#define BP_BY_WIDTH(m, CALL) switch (m) { \
    case 1: CALL(1); break; case 2: CALL(2); break; case 4: CALL(4); break; \
    case 8: CALL(8); break; case 10: CALL(10); break; case 16: CALL(16); break; \
    case 32: CALL(32); break; case 64: CALL(64); break; default: CALL(m); }

/* Bias and activation of one layer, in place.
 * IN: A holds X.W (n x m) on entry; b (m); scale (m, scaled units only).
 * OUT: A = f(z) with z = A + b; Z = z, D = f'(z), G = sigmoid(z) -- each may be NULL.
 * relu'(0) = 0 and leaky_relu'(0) = slope, as in scikit-learn and PyTorch. */
BP_CLONES static void NAME(bp_bias_activation)(
        long n, long m, T *restrict A, const T *restrict b, const T *restrict scale,
        T *restrict Z, T *restrict D, T *restrict G, int kind, T slope) {
    const long N = n * m;
    if (!Z && D && (kind == BP_RELU || kind == BP_LEAKY_RELU)) {
        /* the training step's common case: one pass instead of three */
        if (kind == BP_RELU) {
#define BP_RELU_ROWS(w) NAME(bp_bias_relu_rows)(n, w, A, b, D, 0, 0)
            BP_BY_WIDTH(m, BP_RELU_ROWS)
#undef BP_RELU_ROWS
        } else {
#define BP_LEAKY_ROWS(w) NAME(bp_bias_relu_rows)(n, w, A, b, D, 1, slope)
            BP_BY_WIDTH(m, BP_LEAKY_ROWS)
#undef BP_LEAKY_ROWS
        }
        return;
    }
#define BP_ADD(w) NAME(bp_add_rows)(n, w, A, b)
    BP_BY_WIDTH(m, BP_ADD)
#undef BP_ADD
    if (Z) memcpy(Z, A, (size_t) N * sizeof(T));
    switch (kind) {
    case BP_RELU:
        if (D) for (long k = 0; k < N; k++) D[k] = A[k] > 0 ? (T) 1 : (T) 0;
        for (long k = 0; k < N; k++) A[k] = A[k] > 0 ? A[k] : (T) 0;
        break;
    case BP_LEAKY_RELU:
        if (D) for (long k = 0; k < N; k++) D[k] = A[k] > 0 ? (T) 1 : slope;
        for (long k = 0; k < N; k++) A[k] = A[k] > 0 ? A[k] : slope * A[k];
        break;
    case BP_SIGMOID:
        for (long k = 0; k < N; k++) A[k] = NAME(bp_sigmoid)(A[k]);
        if (D) for (long k = 0; k < N; k++) D[k] = A[k] * (1 - A[k]);
        break;
    case BP_TANH:
        for (long k = 0; k < N; k++) A[k] = TANH(A[k]);
        if (D) for (long k = 0; k < N; k++) D[k] = 1 - A[k] * A[k];
        break;
    case BP_SCALED_SIGMOID:
        for (long i = 0; i < n; i++) {
            T *restrict a = A + i * m;
            for (long j = 0; j < m; j++) {
                T s = NAME(bp_sigmoid)(a[j]);
                if (G) G[i * m + j] = s;
                if (D) D[i * m + j] = scale[j] * s * (1 - s);
                a[j] = scale[j] * s;
            }
        }
        break;
    default:  /* identity */
        if (D) for (long k = 0; k < N; k++) D[k] = 1;
    }
}

/* delta = upstream * D (skipped when D is NULL: delta is upstream itself), and the
 * column sums: db += sum_i delta_i (db = ... when overwrite), dscale += sum_i
 * upstream_i * G_i when G is given.
 * IN: upstream, D, G (n x m). OUT: delta (n x m, unused when D is NULL), db, dscale. */
BP_CLONES static void NAME(bp_delta)(
        long n, long m, const T *restrict upstream, const T *restrict D,
        const T *restrict G, T *restrict delta, T *restrict db, T *restrict dscale,
        int overwrite) {
    const long N = n * m;
    const T *restrict source = upstream;
    if (D && !G) {
        /* one pass: the product, its store and the column sums in registers */
#define BP_DELTA_ROWS(w) NAME(bp_delta_rows)(n, w, upstream, D, delta, db, overwrite)
        BP_BY_WIDTH(m, BP_DELTA_ROWS)
#undef BP_DELTA_ROWS
        return;
    }
    if (D) {
        for (long k = 0; k < N; k++) delta[k] = upstream[k] * D[k];
        source = delta;
    }
#define BP_SUMS(w) NAME(bp_column_sums)(n, w, source, NULL, db, overwrite)
    BP_BY_WIDTH(m, BP_SUMS)
#undef BP_SUMS
    if (G) NAME(bp_column_sums)(n, m, upstream, G, dscale, overwrite);
}

/* 1 when none of x[0:n] is NaN or infinite, else 0. x - x is +0 exactly for finite
 * x and NaN otherwise, and a sum of such terms is 0 or NaN: four vector sums over
 * blocks of 1024 entries, checked after each block (a loop that breaks at the first
 * bad entry does not vectorise; an or-reduction of the comparisons' masks took
 * twelve instructions per two vectors, this takes two). */
BP_CLONES static int NAME(bp_all_finite)(long n, const T *restrict x) {
    typedef T V __attribute__((vector_size(32), aligned(sizeof(T)), may_alias));
    const long VL = (long) (32 / sizeof(T));
    for (long start = 0; start < n; start += 1024) {
        const long end = n - start > 1024 ? start + 1024 : n;
        V a0 = (V) {0}, a1 = a0, a2 = a0, a3 = a0;
        long i = start;
        for (; i + 4 * VL <= end; i += 4 * VL) {
            const V v0 = *(const V *) (x + i), v1 = *(const V *) (x + i + VL);
            const V v2 = *(const V *) (x + i + 2 * VL), v3 = *(const V *) (x + i + 3 * VL);
            a0 += v0 - v0;
            a1 += v1 - v1;
            a2 += v2 - v2;
            a3 += v3 - v3;
        }
        a0 += (a1 + a2) + a3;
        T sum = 0;
        for (; i < end; i++) sum += x[i] - x[i];
        for (long q = 0; q < VL; q++) sum += a0[q];
        if (!(sum == 0)) return 0;
    }
    return 1;
}

/* Bt (m x k) = B^T for B (k x m), both row-major. */
static void NAME(bp_transpose)(long k, long m, const T *restrict B, T *restrict Bt) {
    for (long p = 0; p < k; p++)
        for (long j = 0; j < m; j++) Bt[j * k + p] = B[p * m + j];
}

/* PyTorch's SGD (dampening 0) over n parameters. velocity unused when momentum == 0.
 * IN: grads. OUT: params, velocity. */
BP_CLONES static void NAME(bp_sgd)(
        long n, T *restrict params, const T *restrict grads, T *restrict velocity,
        T lr, T momentum, T weight_decay, int nesterov) {
    if (momentum == 0) {
        for (long i = 0; i < n; i++) params[i] -= lr * (grads[i] + weight_decay * params[i]);
    } else if (nesterov) {
        for (long i = 0; i < n; i++) {
            T g = grads[i] + weight_decay * params[i];
            T v = momentum * velocity[i] + g;
            velocity[i] = v;
            params[i] -= lr * (g + momentum * v);
        }
    } else {
        for (long i = 0; i < n; i++) {
            T g = grads[i] + weight_decay * params[i];
            T v = momentum * velocity[i] + g;
            velocity[i] = v;
            params[i] -= lr * v;
        }
    }
}

/* SGD on a weight matrix whose gradient is X^T.delta over k rows, k small (at most
 * BP_OUTER_ROWS): the gradient of each entry is formed in registers and consumed by
 * the update at once, so dW is never written and W and its velocity are read and
 * written once -- one pass instead of a product that writes dW and an optimizer pass
 * that reads it back (at batch 1 the product is an outer product, a pass of the same
 * size as the update). Same arithmetic as bp_sgd on dW = X^T.delta.
 * IN: X (k x m, rows ldx apart), delta (k x n, rows ldd apart). OUT: W (m x n),
 * velocity (m x n; unused when momentum == 0). */
#define BP_OUTER_ROWS 4
static inline BP_INLINE void NAME(bp_outer_sgd_rows)(
        const long k, long m, long n, const T *restrict X, long ldx,
        const T *restrict delta, long ldd, T *restrict W, T *restrict velocity, T lr,
        T momentum, T weight_decay, int nesterov) {
    for (long i = 0; i < m; i++) {
        T x[BP_OUTER_ROWS];
        for (long p = 0; p < k; p++) x[p] = X[p * ldx + i];
        T *restrict w = W + i * n;
        if (momentum == 0) {
            for (long j = 0; j < n; j++) {
                T g = 0;
                for (long p = 0; p < k; p++) g += x[p] * delta[p * ldd + j];
                w[j] -= lr * (g + weight_decay * w[j]);
            }
            continue;
        }
        T *restrict v = velocity + i * n;
        for (long j = 0; j < n; j++) {
            T g = 0;
            for (long p = 0; p < k; p++) g += x[p] * delta[p * ldd + j];
            g += weight_decay * w[j];
            T vj = momentum * v[j] + g;
            v[j] = vj;
            w[j] -= lr * (nesterov ? g + momentum * vj : vj);
        }
    }
}

BP_CLONES static void NAME(bp_outer_sgd)(
        long k, long m, long n, const T *restrict X, long ldx, const T *restrict delta,
        long ldd, T *restrict W, T *restrict velocity, T lr, T momentum, T weight_decay,
        int nesterov) {
#define BP_OUTER(rows) NAME(bp_outer_sgd_rows)(rows, m, n, X, ldx, delta, ldd, W, \
                                               velocity, lr, momentum, weight_decay, nesterov)
    switch (k) {
    case 1: BP_OUTER(1); break;
    case 2: BP_OUTER(2); break;
    case 3: BP_OUTER(3); break;
    default: BP_OUTER(4);
    }
#undef BP_OUTER
}

/* PyTorch's Adam and AdamW (amsgrad off) as one loop: p is first multiplied by
 * decay (AdamW's decoupled 1 - lr*wd; 1 for Adam, exact), then the L2 term
 * l2 * p is added to the gradient (Adam's weight_decay; 0 for AdamW).
 * step_size = lr / (1 - beta1^t), inv_root_bc2 = 1 / sqrt(1 - beta2^t).
 * IN: grads. OUT: params, exp_avg, exp_avg_sq. */
BP_CLONES static void NAME(bp_adam)(
        long n, T *restrict params, const T *restrict grads, T *restrict exp_avg,
        T *restrict exp_avg_sq, T step_size, T beta1, T beta2, T eps, T l2, T decay,
        T inv_root_bc2) {
    for (long i = 0; i < n; i++) {
        T p = params[i] * decay;
        T g = grads[i] + l2 * p;
        T m = beta1 * exp_avg[i] + (1 - beta1) * g;
        T v = beta2 * exp_avg_sq[i] + (1 - beta2) * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        params[i] = p - step_size * m / (SQRT(v) * inv_root_bc2 + eps);
    }
}
