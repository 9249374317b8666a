/* The cases of kernel_check.c for one element type, instantiated there with
 * T = float or double (SUF, DTYPE, K(kernel) for the kernel of that type, CHUNK for
 * the helper thread's chunk in entries). No include guard. */

#define KC_CAT2(a, b) a##_##b
#define KC_CAT(a, b) KC_CAT2(a, b)
#define L(name) KC_CAT(name, SUF)
#define VL ((long) (32 / sizeof(T)))

static void L(dump)(const char *name, const T *x, long n) {
    dump_bits(name, DTYPE, x, n, sizeof(T));
}

static T *L(random)(long n, double lo, double hi) {
    T *x = alloc(n, sizeof(T));
    for (long i = 0; i < n; i++) x[i] = (T) uniform(lo, hi);
    return x;
}

static T *L(copy)(const T *x, long n) {
    T *y = alloc(n, sizeof(T));
    memcpy(y, x, (size_t) (n > 0 ? n : 0) * sizeof(T));
    return y;
}

/* the first entries of x (up to 8) set to the values kernels must take care with */
static void L(sprinkle)(T *x, long n) {
    const T specials[8] = {(T) NAN, (T) INFINITY, (T) -INFINITY, (T) 0, (T) -0.0,
                           (T) (sizeof(T) == 4 ? 0x1p-140 : 0x1p-1060), (T) -60,
                           (T) 60};
    for (long i = 0; i < n && i < 8; i++) x[i] = specials[i];
}

/* C = alpha op(A) op(B) + beta C, with pad spare entries at the end of every row */
static void L(gemm_case)(int ta, int tb, long m, long n, long k, T alpha, T beta,
                         long pad) {
    const long arows = ta ? k : m, acols = ta ? m : k;
    const long brows = tb ? n : k, bcols = tb ? k : n;
    const long lda = acols + pad, ldb = bcols + pad, ldc = n + pad;
    T *A = L(random)(arows * lda, -1, 1), *B = L(random)(brows * ldb, -1, 1);
    T *C = L(random)(m * ldc, -1, 1);
    T *Bt = alloc(BP_SMALL_SCRATCH, sizeof(T));
    if (beta == 0)  /* C is only written: NaN there must not show */
        for (long i = 0; i < m; i++)
            for (long j = 0; j < n; j++) C[i * ldc + j] = (T) NAN;
    fprintf(out, "case gemm %s ta=%d tb=%d m=%ld n=%ld k=%ld lda=%ld ldb=%ld ldc=%ld "
            "alpha=%a beta=%a\n", DTYPE, ta, tb, m, n, k, lda, ldb, ldc, (double) alpha,
            (double) beta);
    L(dump)("A", A, arows * lda);
    L(dump)("B", B, brows * ldb);
    L(dump)("C0", C, m * ldc);
    K(bp_small_gemm)(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, Bt);
    L(dump)("C", C, m * ldc);
    free(A); free(B); free(C); free(Bt);
}

/* C = f(A.B + bias), D = f'(...) for act identity, relu or leaky relu */
static void L(dense_forward_case)(long m, long n, long k, int act, int has_d) {
    const T slope = (T) 0.1;
    T *A = L(random)(m * k, -1, 1), *B = L(random)(k * n, -1, 1);
    T *bias = L(random)(n, -0.5, 0.5), *C = alloc(m * n, sizeof(T));
    T *D = has_d ? alloc(m * n, sizeof(T)) : NULL, *Bt = alloc(BP_SMALL_SCRATCH, sizeof(T));
    fprintf(out, "case dense_forward %s m=%ld n=%ld k=%ld act=%d slope=%a has_d=%d\n",
            DTYPE, m, n, k, act, (double) slope, has_d);
    L(dump)("A", A, m * k);
    L(dump)("B", B, k * n);
    L(dump)("bias", bias, n);
    K(bp_small_dense_forward)(m, n, k, A, B, bias, C, D, act, slope, Bt);
    L(dump)("C", C, m * n);
    if (D) L(dump)("D", D, m * n);
    free(A); free(B); free(bias); free(C); free(D); free(Bt);
}

/* C = (A.B^T) * M (or masked by M > 0) and colsum its column sums */
static void L(delta_back_case)(long m, long n, long k, int relu_output) {
    T *A = L(random)(m * k, -1, 1), *B = L(random)(n * k, -1, 1);
    T *M = L(random)(m * n, relu_output ? -1 : 0, 1);
    if (relu_output)    /* a ReLU layer's output: zero or positive */
        for (long i = 0; i < m * n; i++) M[i] = M[i] > 0 ? M[i] : (T) 0;
    T *C = alloc(m * n, sizeof(T)), *colsum = L(random)(n, -1, 1);
    T *Bt = alloc(BP_SMALL_SCRATCH, sizeof(T));
    fprintf(out, "case delta_back %s m=%ld n=%ld k=%ld relu_output=%d\n", DTYPE, m, n, k,
            relu_output);
    L(dump)("A", A, m * k);
    L(dump)("B", B, n * k);
    L(dump)("M", M, m * n);
    K(bp_small_delta_back)(m, n, k, A, B, M, C, colsum, relu_output, Bt);
    L(dump)("C", C, m * n);
    L(dump)("colsum", colsum, n);
    free(A); free(B); free(M); free(C); free(colsum); free(Bt);
}

/* bias + activation in place; variant 0: Z NULL (G for scaled sigmoid), 1: Z and D,
 * 2: neither Z, D nor G */
static void L(bias_activation_case)(long n, long m, int kind, int variant) {
    const T slope = (T) 0.01;
    T *A = L(random)(n * m, -12, 12), *b = L(random)(m, -1, 1);
    L(sprinkle)(A, n * m);
    T *scale = kind == BP_SCALED_SIGMOID ? L(random)(m, 0.5, 2) : NULL;
    T *Z = variant == 1 ? alloc(n * m, sizeof(T)) : NULL;
    T *D = variant < 2 ? alloc(n * m, sizeof(T)) : NULL;
    T *G = variant == 0 && scale ? alloc(n * m, sizeof(T)) : NULL;
    fprintf(out, "case bias_activation %s n=%ld m=%ld kind=%d slope=%a has_z=%d has_d=%d "
            "has_g=%d\n", DTYPE, n, m, kind, (double) slope, Z != NULL, D != NULL,
            G != NULL);
    L(dump)("A0", A, n * m);
    L(dump)("b", b, m);
    if (scale) L(dump)("scale", scale, m);
    K(bp_bias_activation)(n, m, A, b, scale, Z, D, G, kind, slope);
    L(dump)("A", A, n * m);
    if (Z) L(dump)("Z", Z, n * m);
    if (D) L(dump)("D", D, n * m);
    if (G) L(dump)("G", G, n * m);
    free(A); free(b); free(scale); free(Z); free(D); free(G);
}

/* delta = upstream * D, db and dscale the column sums */
static void L(delta_case)(long n, long m, int has_d, int has_g, int overwrite) {
    T *up = L(random)(n * m, -1, 1);
    T *D = has_d ? L(random)(n * m, 0, 1) : NULL, *G = has_g ? L(random)(n * m, 0, 1) : NULL;
    T *delta = alloc(n * m, sizeof(T)), *db = L(random)(m, -1, 1);
    T *dscale = L(random)(m, -1, 1);
    fprintf(out, "case delta %s n=%ld m=%ld has_d=%d has_g=%d overwrite=%d\n", DTYPE, n, m,
            has_d, has_g, overwrite);
    L(dump)("upstream", up, n * m);
    if (D) L(dump)("D", D, n * m);
    if (G) L(dump)("G", G, n * m);
    L(dump)("db0", db, m);
    L(dump)("dscale0", dscale, m);
    K(bp_delta)(n, m, up, D, G, delta, db, dscale, overwrite);
    if (D) L(dump)("delta", delta, n * m);
    L(dump)("db", db, m);
    L(dump)("dscale", dscale, m);
    free(up); free(D); free(G); free(delta); free(db); free(dscale);
}

/* bp_all_finite with x[at] set to bad (at < 0: every entry finite) */
static void L(all_finite_case)(long n, long at, T bad) {
    T *x = L(random)(n, -1e3, 1e3);
    if (at >= 0) x[at] = bad;
    fprintf(out, "case all_finite %s n=%ld\n", DTYPE, n);
    L(dump)("x", x, n);
    dump_int("ret", K(bp_all_finite)(n, x));
    free(x);
}

static void L(transpose_case)(long k, long m) {
    T *B = L(random)(k * m, -1, 1), *Bt = alloc(k * m, sizeof(T));
    fprintf(out, "case transpose %s k=%ld m=%ld\n", DTYPE, k, m);
    L(dump)("B", B, k * m);
    K(bp_transpose)(k, m, B, Bt);
    L(dump)("Bt", Bt, k * m);
    free(B); free(Bt);
}

/* SGD, and the same pass shared with the helper thread (same results expected) */
static void L(sgd_case)(long n, T lr, T momentum, T weight_decay, int nesterov) {
    T *p = L(random)(n, -1, 1), *g = L(random)(n, -1, 1);
    T *v = momentum != 0 ? L(random)(n, -0.1, 0.1) : NULL;
    T *p2 = L(copy)(p, n), *v2 = v ? L(copy)(v, n) : NULL;
    fprintf(out, "case sgd %s n=%ld lr=%a momentum=%a weight_decay=%a nesterov=%d\n", DTYPE,
            n, (double) lr, (double) momentum, (double) weight_decay, nesterov);
    L(dump)("params0", p, n);
    L(dump)("grads", g, n);
    if (v) L(dump)("velocity0", v, n);
    K(bp_sgd)(n, p, g, v, lr, momentum, weight_decay, nesterov);
    K(bp_sgd_shared)(n, p2, g, v2, lr, momentum, weight_decay, nesterov);
    L(dump)("params", p, n);
    if (v) L(dump)("velocity", v, n);
    /* the split changes no result: 1 when the shared pass wrote the same bits */
    dump_int("shared_same", memcmp(p, p2, (size_t) n * sizeof(T)) == 0
                            && (!v || memcmp(v, v2, (size_t) n * sizeof(T)) == 0));
    free(p); free(g); free(v); free(p2); free(v2);
}

/* SGD on W with the gradient X^T.delta over k <= BP_OUTER_ROWS rows */
static void L(outer_sgd_case)(long k, long m, long n, T lr, T momentum, T weight_decay,
                              int nesterov) {
    const long ldx = m + 1, ldd = n + 2;
    T *X = L(random)(k * ldx, -1, 1), *delta = L(random)(k * ldd, -1, 1);
    T *W = L(random)(m * n, -1, 1);
    T *v = momentum != 0 ? L(random)(m * n, -0.1, 0.1) : NULL;
    fprintf(out, "case outer_sgd %s k=%ld m=%ld n=%ld ldx=%ld ldd=%ld lr=%a momentum=%a "
            "weight_decay=%a nesterov=%d\n", DTYPE, k, m, n, ldx, ldd, (double) lr,
            (double) momentum, (double) weight_decay, nesterov);
    L(dump)("X", X, k * ldx);
    L(dump)("delta", delta, k * ldd);
    L(dump)("W0", W, m * n);
    if (v) L(dump)("velocity0", v, m * n);
    K(bp_outer_sgd)(k, m, n, X, ldx, delta, ldd, W, v, lr, momentum, weight_decay, nesterov);
    L(dump)("W", W, m * n);
    if (v) L(dump)("velocity", v, m * n);
    free(X); free(delta); free(W); free(v);
}

/* Adam (l2 > 0, decay 1) or AdamW (l2 0, decay 1 - lr wd) at step t, alone and shared
 * with the helper thread */
static void L(adam_case)(long n, double lr, double l2, double weight_decay, int t) {
    const T beta1 = (T) 0.9, beta2 = (T) 0.999, eps = (T) 1e-8, L2 = (T) l2;
    const T decay = (T) (1 - lr * weight_decay);
    const T step_size = (T) (lr / (1 - pow(0.9, t)));
    const T inv_root_bc2 = (T) (1 / sqrt(1 - pow(0.999, t)));
    T *p = L(random)(n, -1, 1), *g = L(random)(n, -1, 1);
    T *m = L(random)(n, -0.1, 0.1), *v = L(random)(n, 0, 0.01);
    T *p2 = L(copy)(p, n), *m2 = L(copy)(m, n), *v2 = L(copy)(v, n);
    fprintf(out, "case adam %s n=%ld step_size=%a beta1=%a beta2=%a eps=%a l2=%a decay=%a "
            "inv_root_bc2=%a\n", DTYPE, n, (double) step_size, (double) beta1,
            (double) beta2, (double) eps, (double) L2, (double) decay,
            (double) inv_root_bc2);
    L(dump)("params0", p, n);
    L(dump)("grads", g, n);
    L(dump)("exp_avg0", m, n);
    L(dump)("exp_avg_sq0", v, n);
    K(bp_adam)(n, p, g, m, v, step_size, beta1, beta2, eps, L2, decay, inv_root_bc2);
    K(bp_adam_shared)(n, p2, g, m2, v2, step_size, beta1, beta2, eps, L2, decay,
                      inv_root_bc2);
    L(dump)("params", p, n);
    L(dump)("exp_avg", m, n);
    L(dump)("exp_avg_sq", v, n);
    dump_int("shared_same", memcmp(p, p2, (size_t) n * sizeof(T)) == 0
                            && memcmp(m, m2, (size_t) n * sizeof(T)) == 0
                            && memcmp(v, v2, (size_t) n * sizeof(T)) == 0);
    free(p); free(g); free(m); free(v); free(p2); free(m2); free(v2);
}

/* the fused one-unit output layer and squared error, k inputs */
static void L(unit_mse_case)(long m, long k, int relu_output) {
    const double scale = 1.0 / (double) m;
    T *A = L(random)(m * k, -1, 1), *w = L(random)(k, -1, 1), *b = L(random)(1, -1, 1);
    T *target = L(random)(m, -2, 2), *M = L(random)(m * k, relu_output ? -1 : 0, 1);
    if (relu_output)
        for (long i = 0; i < m * k; i++) M[i] = M[i] > 0 ? M[i] : (T) 0;
    T *o = L(random)(m, -1, 1), *grad = L(random)(m, -1, 1);
    T *delta = L(random)(m * k, -1, 1), *colsum = L(random)(k, -1, 1);
    T *dW = L(random)(k, -1, 1), *db = L(random)(1, -1, 1);
    fprintf(out, "case unit_mse %s m=%ld k=%ld relu_output=%d scale=%a fits=%d\n", DTYPE, m,
            k, relu_output, scale, K(bp_unit_mse_fits)(k));
    L(dump)("A", A, m * k);
    L(dump)("w", w, k);
    L(dump)("b", b, 1);
    L(dump)("target", target, m);
    L(dump)("M", M, m * k);
    L(dump)("out0", o, m);
    const double ret = K(bp_unit_mse)(m, k, A, w, b, target, scale, o, grad, M,
                                       relu_output, delta, colsum, dW, db);
    dump_double("ret", ret);
    L(dump)("out", o, m);
    L(dump)("grad", grad, m);
    L(dump)("delta", delta, m * k);
    L(dump)("colsum", colsum, k);
    L(dump)("dW", dW, k);
    L(dump)("db", db, 1);
    free(A); free(w); free(b); free(target); free(M); free(o); free(grad); free(delta);
    free(colsum); free(dW); free(db);
}

/* the divergence guard's sums of magnitudes (x[at] = bad unless at < 0) */
static void L(abs_sum_case)(long n, long at, T bad) {
    T *x = L(random)(n, -2, 2);
    if (at >= 0) x[at] = bad;
    double negative = -1;
    fprintf(out, "case abs_sum %s n=%ld\n", DTYPE, n);
    L(dump)("x", x, n);
    dump_double("ret", KC_CAT(bp_abs_sum, SUF)(n, x, NULL));
    dump_double("ret_neg", KC_CAT(bp_abs_sum, SUF)(n, x, &negative));
    dump_double("negative", negative);
    free(x);
}

static void L(run_all)(void) {
    /* products: shapes through each of bp_small_gemm's paths (one row, a few rows,
     * register blocks of 3 and 4 rows, the dot-product and transposed tails, the
     * b^T.A form of A^T.b), every transposition, beta 0 (C only written) and not */
    static const long shapes[][3] = {{1, 37, 5}, {2, 9, 3}, {3, 16, 7}, {4, 20, 6},
                                     {8, 33, 16}, {13, 10, 9}, {24, 16, 16}, {5, 1, 20},
                                     {17, 3, 11}, {9, 40, 4}, {40, 1, 8}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                L(gemm_case)(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 1, 0, 0);
                L(gemm_case)(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], (T) -1.25,
                             (T) 0.5, 2);
            }
    /* a layer's forward: one unit, one or two inputs (B in registers), general */
    static const long fshapes[][3] = {{1, 1, 5}, {7, 1, 12}, {10, 8, 1}, {10, 16, 2},
                                      {9, 32, 2}, {6, 4, 2}, {13, 16, 16}, {3, 10, 7},
                                      {50, 16, 16}, {1, 24, 3}};
    static const int acts[] = {BP_IDENTITY, BP_RELU, BP_LEAKY_RELU};
    for (size_t s = 0; s < sizeof fshapes / sizeof fshapes[0]; s++)
        for (int a = 0; a < 3; a++)
            L(dense_forward_case)(fshapes[s][0], fshapes[s][1], fshapes[s][2], acts[a], 1);
    L(dense_forward_case)(13, 16, 16, BP_RELU, 0);
    static const long dshapes[][3] = {{1, 16, 8}, {4, 10, 16}, {8, 16, 16}, {13, 16, 10},
                                      {20, 5, 3}, {50, 16, 16}, {3, 1, 4}};
    for (size_t s = 0; s < sizeof dshapes / sizeof dshapes[0]; s++)
        for (int r = 0; r < 2; r++)
            L(delta_back_case)(dshapes[s][0], dshapes[s][1], dshapes[s][2], r);
    /* element-wise: the widths BP_BY_WIDTH specialises and others, every activation */
    static const long widths[] = {1, 2, 4, 10, 16, 32, 40, 64, 70};
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
        for (int kind = BP_IDENTITY; kind <= BP_SCALED_SIGMOID; kind++)
            for (int variant = 0; variant < 3; variant++)
                L(bias_activation_case)(5, widths[w], kind, variant);
        L(delta_case)(6, widths[w], 1, 0, 1);
        L(delta_case)(6, widths[w], 1, 0, 0);
        L(delta_case)(6, widths[w], 1, 1, 1);
        L(delta_case)(6, widths[w], 0, 0, 0);
    }
    /* tanh and sigmoid across their whole range, one long row */
    L(bias_activation_case)(1, 4000, BP_TANH, 1);
    L(bias_activation_case)(1, 4000, BP_SIGMOID, 1);
    static const long counts[] = {0, 5, 1023, 1024, 1025, 3000};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        const long n = counts[c];
        L(all_finite_case)(n, -1, 0);
        L(abs_sum_case)(n, -1, 0);
        if (n > 0) {
            L(all_finite_case)(n, n - 1, (T) NAN);
            L(all_finite_case)(n, n / 2, (T) -INFINITY);
            L(abs_sum_case)(n, n / 3, (T) INFINITY);
        }
    }
    L(transpose_case)(3, 5);
    L(transpose_case)(16, 16);
    L(transpose_case)(7, 1);
    /* optimizers: short passes, and passes long enough for the helper thread */
    static const long sizes[] = {37, 2 * CHUNK + 5};
    for (size_t s = 0; s < 2; s++) {
        L(sgd_case)(sizes[s], (T) 0.05, 0, (T) 0.01, 0);
        L(sgd_case)(sizes[s], (T) 0.05, (T) 0.9, 0, 0);
        L(sgd_case)(sizes[s], (T) 0.05, (T) 0.9, (T) 0.001, 1);
        L(adam_case)(sizes[s], 1e-3, 0.01, 0, 3);
        L(adam_case)(sizes[s], 1e-3, 0, 0.01, 1);
    }
    for (long k = 1; k <= BP_OUTER_ROWS; k++) {
        L(outer_sgd_case)(k, 5, 7, (T) 0.05, 0, (T) 0.01, 0);
        L(outer_sgd_case)(k, 5, 7, (T) 0.05, (T) 0.9, 0, 0);
        L(outer_sgd_case)(k, 5, 7, (T) 0.05, (T) 0.9, (T) 0.001, 1);
    }
    /* the fused output layer: 1 to BP_UNIT_VECTORS vectors of inputs, and a k it
     * declines (returns -1, writes nothing) */
    static const long rows[] = {1, 7, 13};
    for (size_t r = 0; r < 3; r++) {
        for (long nv = 1; nv <= BP_UNIT_VECTORS; nv++) {
            L(unit_mse_case)(rows[r], nv * VL, 0);
            L(unit_mse_case)(rows[r], nv * VL, 1);
        }
        L(unit_mse_case)(rows[r], VL + 1, 0);
    }
}

#undef KC_CAT2
#undef KC_CAT
#undef L
#undef VL
