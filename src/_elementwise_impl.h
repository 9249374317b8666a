/* Element-wise loops of the dense core, instantiated by _kernels.c with T = float or
 * double (no include guard).
 *
 * Every function here is a plain loop over contiguous buffers that GCC vectorises;
 * on x86-64 GCC, `target_clones` (BP_CLONES) builds it for AVX-512, AVX2 and
 * baseline x86-64 and picks the best at load time, so a portable wheel (-O3, no
 * -march) still runs wide vectors. Plain C99 but for bp_all_finite's vector sums
 * (BP_VECTOR; a plain loop otherwise). They own nothing, allocate nothing and never
 * touch Python. Pointers documented as "may be NULL" mark optional outputs. */

/* exp, sigmoid and tanh as branch-free arithmetic, so that the loops calling them
 * vectorise (a libm call per element does not). Only +, *, /, comparisons with
 * selects and integer operations on the bits: any C99 compiler builds them, and GCC
 * (12) turns each loop into vector code for every target of BP_CLONES, but for tanh
 * in the baseline SSE2 clone, where it still makes a branch of tanh's final select
 * and runs the loop scalar (branch-free, about libm's speed). With FMA (the
 * AVX2 and AVX-512 clones) GCC contracts a * b + c into one rounding; the error
 * bounds below hold with or without it. src/fit_polynomials.py computes the
 * polynomials and prints their approximation errors; tests/test_activation_accuracy.py
 * measures the functions against mpmath over the whole range of each type.
 * "ulp" is the spacing of T at the correctly rounded result. */
#if BP_DOUBLE
#define BP_EXP_LO ((T) -746)       /* exp(-746) < 2^-1075: rounds to 0 */
#define BP_LOG2E 0x1.71547652b82fep0
#define BP_SHIFTER 0x1.8p52        /* x + 1.5 * 2^52 rounds x to an integer */
#define BP_SHIFTER_BITS 0x4338000000000000ULL
#define BP_LN2_HI 0x1.62e42feep-1  /* ln 2 in 32 bits: k * BP_LN2_HI is exact */
#define BP_LN2_LO 0x1.a39ef35793c76p-33
#define BP_MANTISSA 52
#define BP_BIAS 1023
#define BP_TANH_LIMIT ((T) 0.55)
#else
#define BP_EXP_LO ((T) -104)       /* exp(-104) < 2^-150: rounds to 0 */
#define BP_LOG2E 0x1.715476p0f
#define BP_SHIFTER 0x1.8p23f
#define BP_SHIFTER_BITS 0x4b400000U
#define BP_LN2_HI 0x1.62e4p-1f     /* ln 2 in 15 bits: k * BP_LN2_HI is exact */
#define BP_LN2_LO 0x1.7f7d1cp-20f
#define BP_MANTISSA 23
#define BP_BIAS 127
#define BP_TANH_LIMIT ((T) 0.55)
#endif

/* c ? a : b as bit operations. GCC turns a ?: whose operands are computed only for
 * it into a branch around their computation, and then cannot vectorise the loop for
 * a target without masked arithmetic (SSE2: the floating-point work in the branch
 * might trap, so it is not computed for all lanes). Masks keep the data flow. The
 * mask is a select of two constants in T (all-ones bits, or 0): made from the
 * comparison as an integer, it would need a conversion SSE2 lacks for 64-bit lanes. */
static inline BP_INLINE T NAME(bp_select)(int c, T a, T b) {
    const unsigned ITYPE ones = ~(unsigned ITYPE) 0;
    T all_ones;
    memcpy(&all_ones, &ones, sizeof all_ones);
    const T chosen = c ? all_ones : (T) 0;
    unsigned ITYPE mask, bits_a, bits_b;
    memcpy(&mask, &chosen, sizeof mask);
    memcpy(&bits_a, &a, sizeof bits_a);
    memcpy(&bits_b, &b, sizeof bits_b);
    bits_a = (bits_a & mask) | (bits_b & ~mask);
    T result;
    memcpy(&result, &bits_a, sizeof result);
    return result;
}

/* exp(x) for x <= 0 (or NaN), within 1 ulp of the correctly rounded result, and in
 * *low the rounding error of its last step (so that the result + *low is exp(x) to
 * about a quarter of an ulp): its callers need no more (sigmoid takes exp(-|z|),
 * tanh exp(-2|x|)). With `twice` (a constant at each call) it returns 2 exp(x) for
 * x >= -64 instead, the form tanh uses, one degree cheaper, and leaves *low alone
 * (NULL there).
 *
 * Reduction (Cody-Waite): x = k ln2 + r with k = round(x / ln2) and |r| <= ln2 / 2
 * (a hair more without FMA). k comes from the shifter trick, which needs no
 * conversion instruction: t = x log2(e) + 1.5 * 2^p rounds to an integer spacing, k is
 * t - 1.5 * 2^p exactly and its integer sits in t's low bits. r = (x - k ln2_hi) -
 * k ln2_lo, where ln2_hi has few enough bits that k ln2_hi and the first subtraction
 * are exact; r is then ln2 / 2-small with an error far below its ulp.
 *
 * Polynomial: exp(r) = 1 + r + r^2 Q(r), Q a Chebyshev fit of degree 10 (double) or
 * 5 (float) to (exp(r) - 1 - r) / r^2 on |r| <= ln2 / 2 (degrees 12 and 7 in all);
 * with its coefficients rounded to T, its relative error is below 0.004 ulp
 * (double) and 0.012 ulp (float). (Degree 4 for float, 0.17 ulp, brought sigmoid's
 * worst case to 1.9 ulps.) `twice` uses degrees 9 and 4 (0.15 and 0.17 ulp): in
 * tanh the error of e weighs at most half an ulp of the result.
 * Horner's rule adds under half an ulp: exp(r) = 1 + r (1 + r Q) ends with a sum
 * whose second term is at most 0.42.
 *
 * Scaling: exp(x) = exp(r) 2^k1 2^k2 with k1 = floor(k / 2), k2 = k - k1, each
 * power built in the exponent bits. The split keeps both factors normal down to
 * x = BP_EXP_LO, so the first product is exact and the second rounds once: results
 * in the subnormal range are rounded from exp(r) as any product is (gradual
 * underflow, no flush to zero: the error stays within the bound above, counted in
 * subnormal ulps), and those below half the smallest subnormal are 0. `twice`
 * needs no split: 2^(k+1) is normal for x >= -64.
 *
 * Specials: x is first raised to at least BP_EXP_LO (-64 with `twice`), so
 * exp(-inf) = 0 (or 2 exp(-64), which tanh rounds away) through the same
 * arithmetic; NaN passes (a comparison with NaN is false), and the polynomial
 * carries it to the result. The integer work is unsigned, so NaN's bits wrap
 * harmlessly. (No upper clamp: GCC would specialise the loop for a clamped constant
 * that overflows, and could then not vectorise it for SSE2.) */
static inline BP_INLINE T NAME(bp_exp)(T x, const int twice, T *low) {
    x = NAME(bp_select)(x < (twice ? (T) -64 : BP_EXP_LO), twice ? (T) -64 : BP_EXP_LO, x);
    const T t = x * (T) BP_LOG2E + (T) BP_SHIFTER;
    const T k = t - (T) BP_SHIFTER;
    const T r = (x - k * (T) BP_LN2_HI) - k * (T) BP_LN2_LO;
    T q;
#if BP_DOUBLE
    if (!twice) {
        q = 0x1.1f72fc730b4ffp-29;
        q = q * r + 0x1.af4ddd84882fep-26;
        q = q * r + 0x1.27e4db67b4303p-22;
        q = q * r + 0x1.71de02375656cp-19;
        q = q * r + 0x1.a01a01a6d7808p-16;
        q = q * r + 0x1.a01a01abe62ddp-13;
        q = q * r + 0x1.6c16c16c162d6p-10;
        q = q * r + 0x1.11111111100dfp-7;
        q = q * r + 0x1.5555555555556p-5;
        q = q * r + 0x1.5555555555557p-3;
        q = q * r + 0x1p-1;
    } else {
        q = 0x1.af389ecfc4b9cp-26;
        q = q * r + 0x1.28917c89a43a7p-22;
        q = q * r + 0x1.71de0db2f6b19p-19;
        q = q * r + 0x1.a019b9149a41cp-16;
        q = q * r + 0x1.a01a01a7c2efep-13;
        q = q * r + 0x1.6c16c17889ef1p-10;
        q = q * r + 0x1.11111111109b5p-7;
        q = q * r + 0x1.5555555553d68p-5;
        q = q * r + 0x1.5555555555556p-3;
        q = q * r + 0x1.0000000000001p-1;
    }
#else
    if (!twice) {
        q = 0x1.a124e4p-13f;
        q = q * r + 0x1.6d4316p-10f;
        q = q * r + 0x1.1110ep-7f;
        q = q * r + 0x1.5554eap-5f;
        q = q * r + 0x1.555556p-3f;
        q = q * r + 0x1p-1f;
    } else {
        q = 0x1.6d10fcp-10f;
        q = q * r + 0x1.120b62p-7f;
        q = q * r + 0x1.55551ap-5f;
        q = q * r + 0x1.5554dep-3f;
        q = q * r + 0x1p-1f;
    }
#endif
    unsigned ITYPE bits, first, second;
    memcpy(&bits, &t, sizeof bits);
    T scale1, scale2;
    if (twice) {
        const T p = (q * r + 1) * r + 1;
        first = (bits - BP_SHIFTER_BITS + BP_BIAS + 1) << BP_MANTISSA;   /* 2^(k+1) */
        memcpy(&scale1, &first, sizeof scale1);
        return p * scale1;
    }
    const T v = (q * r + 1) * r;
    const T p = 1 + v;
    /* k + 2^(w-1) for w exponent bits: positive, so the halving is a plain shift */
    bits = bits - BP_SHIFTER_BITS + 2 * (BP_BIAS + 1);
    first = (bits >> 1) - (BP_BIAS + 1) + BP_BIAS;     /* k1 + bias */
    second = bits - (bits >> 1) - (BP_BIAS + 1) + BP_BIAS;  /* k2 + bias */
    first <<= BP_MANTISSA;
    second <<= BP_MANTISSA;
    memcpy(&scale1, &first, sizeof scale1);
    memcpy(&scale2, &second, sizeof scale2);
    /* the rounding error of 1 + v (Fast2Sum: |v| < 1), scaled like p */
    *low = ((1 - p) + v) * scale1 * scale2;
    return p * scale1 * scale2;
}

/* sigmoid(z) = 1 / (1 + exp(-z)) for z >= 0 and exp(z) / (1 + exp(z)) for z < 0: exp
 * sees only -|z|, never overflows, and the result keeps full relative precision on
 * both sides (no 1 - tiny for z << 0). One exp and one division, the numerator
 * chosen by a select. Rounding errors are carried to first order: exp hands back
 * e_low, the rounding error of its last sum (scaled), so that e + e_low is exp(-|z|)
 * to about a quarter of an ulp; t = (1 - d) + e (exact, Fast2Sum) + e_low is what
 * d = 1 + e lacks. Then n / d = q is corrected to (n + n_low) / (d + t) =
 * q + (n_low - q t) / d, with 1 / d taken from the chord 1.5 - d / 2 (the term is
 * below an ulp, so the chord's 12% costs about a tenth of one; the exact 1 - q for
 * z < 0, a select, would keep GCC from vectorising the loop for SSE2). Without the
 * corrections the errors of exp, of the sum and of the division add up to just over
 * 2 ulps at worst (about z = -2.7 in double); with them the division's half ulp
 * dominates (the test measures the whole). sigmoid(+inf) = 1, sigmoid(-inf) = 0,
 * NaN gives NaN; results below the smallest normal are exp(z) itself, rounded as
 * exp rounds them. */
static inline BP_INLINE T NAME(bp_sigmoid)(T z) {
    T e_low;
    const T e = NAME(bp_exp)(z < 0 ? z : -z, 0, &e_low);   /* e + e_low = exp(-|z|) */
    const T d = 1 + e;
    const T t = ((1 - d) + e) + e_low;        /* d + t = 1 + e + e_low */
    const T n_low = NAME(bp_select)(z >= 0, 0, e_low);
    const T q = NAME(bp_select)(z >= 0, 1, e) / d;
    const T w = (T) 1.5 - (T) 0.5 * d;        /* 1 / d within 12% (the chord) */
    return q + w * (n_low - q * t);           /* (n + n_low) / (d + t), first order */
}

/* tanh(x). For |x| >= 0.55: sign(x) (1 - 2 / (exp(2|x|) + 1)), computed as
 * 1 - 2e / (1 + e) with e = exp(-2|x|) <= 1/3 (exp never overflows; 2e comes from
 * bp_exp's `twice`, and 1 + e as 0.5 (2e) + 1, exactly as 1 + e would round). There
 * tanh >= 0.5, and 2e / (1 + e) <= 0.5 carries an error of at most about 1.5 of its
 * own ulps, which is at most 0.75 ulp of the result; the subtraction adds half an
 * ulp. For large |x| the quotient falls below half an ulp of 1 and the result is
 * +-1 exactly (double from |x| > 19.1, float from 9.1), so exp's argument may stop
 * at -64 (|x| = 32).
 * For |x| < 0.55, where that subtraction would cancel: tanh(x) = x + x^3 G(x^2), G a
 * Chebyshev fit of degree 10 (double) or 4 (float) to (tanh(x) - x) / x^3 on
 * x^2 <= 0.3025 (relative error of the whole, coefficients rounded: 0.05 ulp double,
 * 0.09 ulp float). x^3 G is at most 0.1 x, so its rounding errors weigh a tenth; the
 * final sum adds half an ulp; tiny x give x.
 * Both forms are computed for |x| and a select picks one; the result then takes x's
 * sign bit (so tanh(-0) = -0, which x + x^3 G, whose second term is +0 there, would
 * lose). NaN takes the second form (|NaN| < 0.55 is false), where exp passes it on. */
static inline BP_INLINE T NAME(bp_tanh)(T x) {
    const T a = x < 0 ? -x : x;
    const T e2 = NAME(bp_exp)(-(a + a), 1, NULL);    /* 2 exp(-2|x|) */
    const T large = 1 - e2 / ((T) 0.5 * e2 + 1);
    const T s = a * a;
#if BP_DOUBLE
    T g = -0x1.59a834187ce22p-16;
    g = g * s + 0x1.64fd88e9900a5p-14;
    g = g * s - 0x1.ec1091436eb2ap-13;
    g = g * s + 0x1.34c5a8a996cd4p-11;
    g = g * s - 0x1.7d97cfd138c28p-10;
    g = g * s + 0x1.d6d339333f329p-9;
    g = g * s - 0x1.226e32f00cf0cp-7;
    g = g * s + 0x1.664f487713373p-6;
    g = g * s - 0x1.ba1ba1b9fec84p-5;
    g = g * s + 0x1.1111111111032p-3;
    g = g * s - 0x1.5555555555555p-2;
#else
    T g = -0x1.b13538p-8f;
    g = g * s + 0x1.5d220ep-6f;
    g = g * s - 0x1.b9a044p-5f;
    g = g * s + 0x1.110feap-3f;
    g = g * s - 0x1.555554p-2f;
#endif
    const T small = a + (a * s) * g;
    const T magnitude = NAME(bp_select)(a < BP_TANH_LIMIT, small, large);
    /* tanh(|x|) >= 0 (NaN aside) takes x's sign bit: tanh(-0) = -0 */
    unsigned ITYPE bits, sign;
    memcpy(&bits, &magnitude, sizeof bits);
    memcpy(&sign, &x, sizeof sign);
    bits |= sign & ((unsigned ITYPE) 1 << (8 * sizeof(T) - 1));
    T result;
    memcpy(&result, &bits, sizeof result);
    return result;
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

/* A = f(A + b) for f = sigmoid or tanh, and D = f'(z) (computed from f(z)) unless D
 * is NULL, one pass per row: the bias sum never goes back to memory. Inlined with
 * kind and D's nullness constant, so each instance is one vector loop. */
static inline BP_INLINE void NAME(bp_bias_smooth_rows)(long n, long m, T *restrict A,
                                                        const T *restrict b,
                                                        T *restrict D, const int kind) {
    for (long i = 0; i < n; i++) {
        T *restrict a = A + i * m;
        for (long j = 0; j < m; j++) {
            const T z = a[j] + b[j];
            const T s = kind == BP_TANH ? NAME(bp_tanh)(z) : NAME(bp_sigmoid)(z);
            a[j] = s;
            if (D) D[i * m + j] = kind == BP_TANH ? 1 - s * s : s * (1 - s);
        }
    }
}

#define BP_BY_WIDTH(m, CALL) switch (m) { \
    case 1: CALL(1); break; case 2: CALL(2); break; case 4: CALL(4); break; \
    case 8: CALL(8); break; case 10: CALL(10); break; case 16: CALL(16); break; \
    case 32: CALL(32); break; case 64: CALL(64); break; default: CALL(m); }

/* Bias and activation of one layer, in place.
 * IN: A holds X.W (n x m) on entry; b (m); scale (m, scaled units only).
 * OUT: A = f(z) with z = A + b; Z = z, D = f'(z), G = sigmoid(z) -- each may be NULL.
 * relu'(0) = 0 and leaky_relu'(0) = slope, as in scikit-learn and PyTorch. */
BP_CLONES BP_KERNEL void NAME(bp_bias_activation)(
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
    if (!Z && m >= 32 && (kind == BP_SIGMOID || kind == BP_TANH)) {
        /* wide rows: one pass (narrow layers fit in cache, and take the loops below,
         * whose flat passes need no per-row loop) */
        if (kind == BP_TANH) {
            if (D) NAME(bp_bias_smooth_rows)(n, m, A, b, D, BP_TANH);
            else NAME(bp_bias_smooth_rows)(n, m, A, b, NULL, BP_TANH);
        } else {
            if (D) NAME(bp_bias_smooth_rows)(n, m, A, b, D, BP_SIGMOID);
            else NAME(bp_bias_smooth_rows)(n, m, A, b, NULL, BP_SIGMOID);
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
        if (D) {
            for (long k = 0; k < N; k++) {
                const T s = NAME(bp_sigmoid)(A[k]);
                A[k] = s;
                D[k] = s * (1 - s);
            }
        } else {
            for (long k = 0; k < N; k++) A[k] = NAME(bp_sigmoid)(A[k]);
        }
        break;
    case BP_TANH:
        if (D) {
            for (long k = 0; k < N; k++) {
                const T s = NAME(bp_tanh)(A[k]);
                A[k] = s;
                D[k] = 1 - s * s;
            }
        } else {
            for (long k = 0; k < N; k++) A[k] = NAME(bp_tanh)(A[k]);
        }
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
BP_CLONES BP_KERNEL void NAME(bp_delta)(
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

/* log(1 + e + low) for 0 <= e <= 1 (or NaN), low a tiny correction of e (bp_exp's
 * *low, or 0): binary cross-entropy's softplus term log1p(exp(-|z|)). u = 1 + e
 * rounds; c = (e - (u - 1) + low) / u carries its rounding error (and low) to first
 * order. u = m 2^k with k = 0 or 1 and m in [sqrt(1/2), sqrt(2)]; log m = 2 atanh(s)
 * with s = (m - 1) / (m + 1), |s| <= 0.172, m - 1 exact (Sterbenz); atanh's Taylor
 * series in s^2 <= 0.0295 to s^21 (double) or s^11 (float), whose truncation is
 * below 0.03 ulp. The quotient s costs about an ulp, so the result is within about
 * 2 ulps (tests/test_loss_exp_accuracy.py measures it). log1p(0) = 0 exactly. */
static inline BP_INLINE T NAME(bp_log1p_unit)(T e, T low) {
    const T u = 1 + e;
    const T c = ((e - (u - 1)) + low) / u;
    const int big = u > (T) 1.4142135623730951;
    const T m = NAME(bp_select)(big, (T) 0.5 * u, u);
    const T k = NAME(bp_select)(big, (T) 1, (T) 0);
    const T s = (m - 1) / (m + 1);
    const T s2 = s * s;
    T q;     /* atanh(s) / s - 1 = s^2 q */
#if BP_DOUBLE
    q = (T) 1 / 21;
    q = q * s2 + (T) 1 / 19;
    q = q * s2 + (T) 1 / 17;
    q = q * s2 + (T) 1 / 15;
    q = q * s2 + (T) 1 / 13;
    q = q * s2 + (T) 1 / 11;
    q = q * s2 + (T) 1 / 9;
#else
    q = (T) 1 / 11;
    q = q * s2 + (T) 1 / 9;
#endif
    q = q * s2 + (T) 1 / 7;
    q = q * s2 + (T) 1 / 5;
    q = q * s2 + (T) 1 / 3;
    const T twice_s = 2 * s;
    const T log_m = twice_s + twice_s * (s2 * q);
    return k * (T) BP_LN2_HI + (log_m + (k * (T) BP_LN2_LO + c));
}

/* out[i] = log(1 + exp(-|z[i]|)), the softplus term of binary cross-entropy, within
 * about 2 ulps; never overflows (exp sees -|z| only). One vector loop. */
BP_CLONES BP_KERNEL void NAME(bp_softplus_neg_abs)(long n, const T *restrict z,
                                               T *restrict out) {
    for (long i = 0; i < n; i++) {
        T low;
        const T e = NAME(bp_exp)(z[i] < 0 ? z[i] : -z[i], 0, &low);
        out[i] = NAME(bp_log1p_unit)(e, low);
    }
}

/* out[i] = sigmoid(z[i]) (bp_sigmoid, within 2 ulps). One vector loop. */
BP_CLONES BP_KERNEL void NAME(bp_sigmoid_array)(long n, const T *restrict z, T *restrict out) {
    for (long i = 0; i < n; i++) out[i] = NAME(bp_sigmoid)(z[i]);
}

/* out[i] = exp(x[i]) for x[i] <= 0 (or NaN), within 1 ulp (bp_exp); x and out may be
 * the same buffer. The exp inside the loss kernels (src/_loss_kernels.pxd): softmax
 * takes exp(z - max z), binary cross-entropy exp(-|z|), both never positive, so
 * nothing overflows. One vector loop (a libm call per element does not vectorise). */
BP_CLONES BP_KERNEL void NAME(bp_exp_nonpositive)(long n, const T *x, T *out) {
    for (long i = 0; i < n; i++) {
        T low;
        out[i] = NAME(bp_exp)(x[i], 0, &low);
    }
}

/* 1 when none of x[0:n] is NaN or infinite, else 0. x - x is +0 exactly for finite
 * x and NaN otherwise, and a sum of such terms is 0 or NaN: four vector sums over
 * blocks of 1024 entries, checked after each block (a loop that breaks at the first
 * bad entry does not vectorise; an or-reduction of the comparisons' masks took
 * twelve instructions per two vectors, this takes two). */
#if BP_VECTOR
BP_CLONES BP_KERNEL int NAME(bp_all_finite)(long n, const T *restrict x) {
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
#else
/* the portable path: the same sums of x - x in plain C, in order within each block */
BP_CLONES BP_KERNEL int NAME(bp_all_finite)(long n, const T *restrict x) {
    for (long start = 0; start < n; start += 1024) {
        const long end = n - start > 1024 ? start + 1024 : n;
        T sum = 0;
        for (long i = start; i < end; i++) sum += x[i] - x[i];
        if (!(sum == 0)) return 0;
    }
    return 1;
}
#endif

/* Bt (m x k) = B^T for B (k x m), both row-major. */
BP_KERNEL void NAME(bp_transpose)(long k, long m, const T *restrict B, T *restrict Bt) {
    for (long p = 0; p < k; p++)
        for (long j = 0; j < m; j++) Bt[j * k + p] = B[p * m + j];
}

/* PyTorch's SGD (dampening 0) over n parameters. velocity unused when momentum == 0.
 * IN: grads. OUT: params, velocity. */
BP_CLONES BP_KERNEL void NAME(bp_sgd)(
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

BP_CLONES BP_KERNEL void NAME(bp_outer_sgd)(
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
BP_CLONES BP_KERNEL void NAME(bp_adam)(
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

#undef BP_EXP_LO
#undef BP_LOG2E
#undef BP_SHIFTER
#undef BP_SHIFTER_BITS
#undef BP_LN2_HI
#undef BP_LN2_LO
#undef BP_MANTISSA
#undef BP_BIAS
#undef BP_TANH_LIMIT
