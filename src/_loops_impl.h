/* Instantiated by _loops.h with T = float or double; see there. No include guard. */

/* sigmoid by the sign of z: exp never sees a positive argument */
static inline T NAME(bp_sigmoid)(T z) {
    T e = EXP(-(z >= 0 ? z : -z));
    return z >= 0 ? 1 / (1 + e) : e / (1 + e);
}

/* Bias and activation of one layer, in place.
 * IN: A holds X.W (n x m) on entry; b (m); scale (m, scaled units only).
 * OUT: A = f(z) with z = A + b; Z = z, D = f'(z), G = sigmoid(z) -- each may be NULL.
 * relu'(0) = 0 and leaky_relu'(0) = slope, as in scikit-learn and PyTorch. */
BP_CLONES static void NAME(bp_bias_activation)(
        long n, long m, T *restrict A, const T *restrict b, const T *restrict scale,
        T *restrict Z, T *restrict D, T *restrict G, int kind, T slope) {
    for (long i = 0; i < n; i++) {
        T *restrict a = A + i * m;
        T *restrict d = D ? D + i * m : NULL;
        for (long j = 0; j < m; j++) a[j] += b[j];
        if (Z) memcpy(Z + i * m, a, (size_t) m * sizeof(T));
        switch (kind) {
        case BP_RELU:
            if (d) for (long j = 0; j < m; j++) d[j] = a[j] > 0 ? (T) 1 : (T) 0;
            for (long j = 0; j < m; j++) a[j] = a[j] > 0 ? a[j] : (T) 0;
            break;
        case BP_LEAKY_RELU:
            if (d) for (long j = 0; j < m; j++) d[j] = a[j] > 0 ? (T) 1 : slope;
            for (long j = 0; j < m; j++) a[j] = a[j] > 0 ? a[j] : slope * a[j];
            break;
        case BP_SIGMOID:
            for (long j = 0; j < m; j++) a[j] = NAME(bp_sigmoid)(a[j]);
            if (d) for (long j = 0; j < m; j++) d[j] = a[j] * (1 - a[j]);
            break;
        case BP_TANH:
            for (long j = 0; j < m; j++) a[j] = TANH(a[j]);
            if (d) for (long j = 0; j < m; j++) d[j] = 1 - a[j] * a[j];
            break;
        case BP_SCALED_SIGMOID: {
            T *restrict g = G ? G + i * m : NULL;
            for (long j = 0; j < m; j++) {
                T s = NAME(bp_sigmoid)(a[j]);
                if (g) g[j] = s;
                if (d) d[j] = scale[j] * s * (1 - s);
                a[j] = scale[j] * s;
            }
            break;
        }
        default:  /* identity */
            if (d) for (long j = 0; j < m; j++) d[j] = 1;
        }
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
    if (overwrite) {
        for (long j = 0; j < m; j++) db[j] = 0;
        if (G) for (long j = 0; j < m; j++) dscale[j] = 0;
    }
    for (long i = 0; i < n; i++) {
        const T *restrict up = upstream + i * m;
        if (D) {
            const T *restrict d = D + i * m;
            T *restrict out = delta + i * m;
            for (long j = 0; j < m; j++) {
                T v = up[j] * d[j];
                out[j] = v;
                db[j] += v;
            }
        } else {
            for (long j = 0; j < m; j++) db[j] += up[j];
        }
        if (G) {
            const T *restrict g = G + i * m;
            for (long j = 0; j < m; j++) dscale[j] += up[j] * g[j];
        }
    }
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
