/* Instantiated by _kernels.c (vector path) with T = float or double, after _small_gemm_impl.h, whose
 * vector types and register blocks it uses; no include guard.
 *
 * The fused output layer and loss of the training step (src/_engine.pyx, unit_output):
 * a one-unit identity output layer under the unweighted squared error, whose forward,
 * loss, dL/doutput, the layer's dW and db, and the delta (and bias gradient) of the
 * layer below are all formed in one pass over the rows while each row is in registers.
 */

/* The backward of bp_unit_mse for row i, whose dL/doutput is g. */
static inline BP_INLINE void NAME(bp_unit_mse_back)(
        const int NV, long i, T g, const T *restrict A, const NAME(bp_vec) *wv,
        const T *restrict M, int relu_output, T *restrict delta, NAME(bp_vec) *gw,
        NAME(bp_vec) *cs) {
    typedef NAME(bp_vec) V;
    typedef NAME(bp_ivec) IV;
    const long k = NV * BP_VL;
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
        const V mv = *(const V *) (M + i * k + v * BP_VL);
        gw[v] += g * *(const V *) (A + i * k + v * BP_VL);
        V d = (g * wv[v]) * mv;
        if (relu_output)
            d = (V) ((IV) (mv > 0) & (IV) (g * wv[v]));
        *(V *) (delta + i * k + v * BP_VL) = d;
        cs[v] += d;
    }
}

/* The rows of bp_unit_mse with k = NV vectors: the forward and the loss, then the
 * backward, whose sums of dW and of the delta below stay in registers over all rows.
 * Forward four rows at a time, their dot products reduced
 * together (bp_hsum4), the last rows singly: the same sums in the same order as the
 * forward's dot products (bp_gemm_dots), so the output and dL/doutput are those of
 * the separate passes. The squares go into four sums as the loss kernel takes them,
 * but the compiler may fuse each square and add into one multiply-add here (the
 * clones have FMA) and not in the loss kernel: the loss can differ in its last bit.
 * db sums each block's four rows in four chains (one chain waited on the latency of
 * its adds), so db can differ in its last bits from a column sum in row order. */
static inline BP_INLINE double NAME(bp_unit_mse_rows)(
        const int NV, long m, const T *restrict A, const T *restrict w, T bias,
        const T *restrict target, double c, T *restrict out, T *restrict grad,
        const T *restrict M, int relu_output, T *restrict delta, T *restrict colsum,
        T *restrict dW, T *restrict db) {
    typedef NAME(bp_vec) V;
    const long k = NV * BP_VL;
    V wv[BP_UNIT_VECTORS], gw[BP_UNIT_VECTORS], cs[BP_UNIT_VECTORS];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
        wv[v] = *(const V *) (w + v * BP_VL);
        gw[v] = cs[v] = (V) {0};
    }
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    T gb = 0, gq[4] = {0, 0, 0, 0};     /* db's sum: four chains over the blocks of rows */
    long i = 0;
    for (; i + 4 <= m; i += 4) {
        const T *restrict a = A + i * k;
        V acc0 = (V) {0}, acc1 = (V) {0}, acc2 = (V) {0}, acc3 = (V) {0};
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            acc0 += *(const V *) (a + v * BP_VL) * wv[v];
            acc1 += *(const V *) (a + k + v * BP_VL) * wv[v];
            acc2 += *(const V *) (a + 2 * k + v * BP_VL) * wv[v];
            acc3 += *(const V *) (a + 3 * k + v * BP_VL) * wv[v];
        }
        T o[4];
        NAME(bp_hsum4)(acc0, acc1, acc2, acc3, o);
        double r[4];
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) {
            o[q] += bias;
            out[i + q] = o[q];
            r[q] = (double) o[q] - (double) target[i + q];
        }
        s0 += r[0] * r[0];
        s1 += r[1] * r[1];
        s2 += r[2] * r[2];
        s3 += r[3] * r[3];
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) {
            const T g = (T) (c * r[q]);
            grad[i + q] = g;
            gq[q] += g;
        }
    }
    gb = (gq[0] + gq[1]) + (gq[2] + gq[3]);
    for (; i < m; i++) {
        const T o = NAME(bp_dot_vectors)(A + i * k, w, k) + bias;
        out[i] = o;
        const double r = (double) o - (double) target[i];
        s0 += r * r;
        const T g = (T) (c * r);
        grad[i] = g;
        gb += g;
    }
    /* the backward in a second pass: each row's g is known, no row waits on its
     * dot product's reduction */
    for (i = 0; i < m; i++)
        NAME(bp_unit_mse_back)(NV, i, grad[i], A, wv, M, relu_output, delta, gw, cs);
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
        *(V *) (dW + v * BP_VL) = gw[v];
        *(V *) (colsum + v * BP_VL) = cs[v];
    }
    *db = gb;
    return (s0 + s1) + (s2 + s3);
}

/* A one-unit identity output layer (weights w, k x 1, and bias b[0]) under the
 * unweighted squared error, forward and backward in one call over its input A (m x k,
 * row-major), read twice (the forward and the loss, then the backward, once every
 * row's dL/doutput is known): out = A.w + b; the loss's sum of squares (returned, times
 * scale) and grad = 2 * scale * (out - target); the layer's gradients dW = A^T.grad
 * (k entries) and db[0] = sum(grad) (overwritten); and the delta of the layer below,
 * delta = (grad . w^T) * M with its column sums colsum (overwritten), M being that
 * layer's derivative cache or, with relu_output, its ReLU output (derivative 1 where
 * positive, 0 elsewhere). The residual and the sum of squares are taken in double, as
 * by the loss kernels. Only for k a multiple of the vector width, at most
 * BP_UNIT_VECTORS vectors (bp_unit_mse_fits); returns -1 (nothing written) else. */
BP_CLONES BP_KERNEL double NAME(bp_unit_mse)(
        long m, long k, const T *A, const T *w, const T *b, const T *target, double scale,
        T *out, T *grad, const T *M, int relu_output, T *delta, T *colsum, T *dW, T *db) {
    const double c = 2.0 * scale;
    double sum;
    if (k % BP_VL != 0)
        return -1;
#define BP_UNIT_CASE(NV)                                                               \
    case NV:                                                                           \
        sum = relu_output                                                              \
            ? NAME(bp_unit_mse_rows)(NV, m, A, w, b[0], target, c, out, grad, M, 1,    \
                                     delta, colsum, dW, db)                            \
            : NAME(bp_unit_mse_rows)(NV, m, A, w, b[0], target, c, out, grad, M, 0,    \
                                     delta, colsum, dW, db);                           \
        break;
    switch (k / BP_VL) {
        BP_UNIT_CASE(1)
        BP_UNIT_CASE(2)
        BP_UNIT_CASE(3)
        BP_UNIT_CASE(4)
        default:
            return -1;
    }
#undef BP_UNIT_CASE
    return scale * sum;
}
