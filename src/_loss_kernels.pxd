# Loss kernels on raw pointers, each fused with the gradient of the loss with respect
# to its input; shared by the Python-facing wrappers (_losses.pyx) and the fused
# training step (_engine.pyx).
#
# Own nothing, allocate nothing, run without the GIL, cannot raise. Sums are
# accumulated in double whatever the buffer dtype.
#
# Every kernel returns   value = scale * sum_i w_i * l_i   and writes
# grad = d value / d output, where l_i is sample i's loss summed over its k outputs
# and w_i its weight (weight NULL means all ones). The caller picks `scale` for the
# reduction (1 for "sum", 1/(k * sum w) or 1/sum w for the means).
#
# Softmax cross-entropy and binary cross-entropy take logits: the softmax/sigmoid is
# fused into the loss so the output delta is simply  prediction - target  (this
# identity holds for softmax + cross-entropy and sigmoid + binary cross-entropy,
# which is why those losses take logits and the last layer stays "identity").
# Log-sum-exp subtracts the row maximum and the binary form uses
# max(z, 0) - z*t + log1p(exp(-|z|)), so logits of any size give finite values;
# the sigmoid is evaluated by the sign of z, so exp never overflows.
#
# The Poisson loss takes log-rates z (a log link) and has no bounded form: exp(z)
# is taken in the buffer's precision and overflows to +inf above z ~ 88.72 (float32)
# or ~ 709.78 (float64). There the element's loss and gradient are +inf, as in
# PyTorch's PoissonNLLLoss(log_input=True); the kernel never forms inf - inf, so a
# finite input never gives NaN (short of a target whose product with a log-rate
# itself overflows double, |t * z| > 1.8e308, outside any count).
from cython cimport floating
from libc.stdint cimport int64_t
from libc.float cimport DBL_MAX
from libc.math cimport exp, expf, log

from _loops cimport exp_nonpositive, sigmoid_array, softplus_neg_abs

# the loss codes of the fused training step
cdef enum:
    LOSS_MSE = 0
    LOSS_CE_LABELS = 1
    LOSS_CE_PROBS = 2
    LOSS_BCE = 3
    LOSS_POISSON = 4


cdef inline floating fexp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline double mse_kernel(long n, long k, const floating* output,
                              const floating* target, const floating* weight,
                              floating* grad, double scale) noexcept nogil:
    """l_i = sum_k (o_ik - t_ik)^2; grad = 2 * scale * w_i * (o - t)."""
    cdef long i, j
    cdef double total = 0.0, row, w, r
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, r0, r1, r2, r3
    cdef double c = 2.0 * scale
    cdef long count = n * k, blocked = count - count % 4
    if weight == NULL:
        # unweighted: one pass over all entries, four sums in flight (a row of one
        # output would otherwise cost a loop set-up per entry)
        for i in range(0, blocked, 4):
            r0 = <double> output[i] - <double> target[i]
            r1 = <double> output[i + 1] - <double> target[i + 1]
            r2 = <double> output[i + 2] - <double> target[i + 2]
            r3 = <double> output[i + 3] - <double> target[i + 3]
            s0 += r0 * r0
            s1 += r1 * r1
            s2 += r2 * r2
            s3 += r3 * r3
            grad[i] = <floating> (c * r0)
            grad[i + 1] = <floating> (c * r1)
            grad[i + 2] = <floating> (c * r2)
            grad[i + 3] = <floating> (c * r3)
        for i in range(blocked, count):
            r0 = <double> output[i] - <double> target[i]
            s0 += r0 * r0
            grad[i] = <floating> (c * r0)
        return scale * ((s0 + s1) + (s2 + s3))
    for i in range(n):
        w = weight[i] if weight != NULL else 1.0
        row = 0.0
        for j in range(k):
            r = <double> output[i * k + j] - <double> target[i * k + j]
            row += r * r
            grad[i * k + j] = <floating> (2.0 * scale * w * r)
        total += w * row
    return scale * total


cdef inline void shifted_exp(long n, long k, const floating* z,
                             floating* out) noexcept nogil:
    """out = exp(z - max z) row by row, unnormalised: the differences first, then one
    vector loop of exp over all n * k entries (bp_exp_nonpositive, within 1 ulp)."""
    cdef long i, j
    cdef floating m
    for i in range(n):
        m = z[i * k]
        for j in range(1, k):
            if z[i * k + j] > m:
                m = z[i * k + j]
        for j in range(k):
            out[i * k + j] = z[i * k + j] - m
    exp_nonpositive(n * k, out, out)


cdef inline double normalise_row(const floating* z, long k, floating* probs) noexcept nogil:
    """Divide a row of exp(z - max z) (from shifted_exp) by its sum, which gives
    softmax(z); return logsumexp(z)."""
    cdef long j
    cdef floating m = z[0]
    cdef double s = 0.0
    for j in range(1, k):
        if z[j] > m:
            m = z[j]
    for j in range(k):
        s += probs[j]
    for j in range(k):
        probs[j] = <floating> (probs[j] / s)
    return m + log(s)


cdef inline double cross_entropy_labels_kernel(long n, long k, const floating* logits,
                                               const int64_t* labels, const floating* weight,
                                               floating* grad, double scale) noexcept nogil:
    """l_i = logsumexp(z_i) - z_i[y_i]; grad = scale * w_i * (softmax(z_i) - onehot(y_i))."""
    cdef long i, j
    cdef double total = 0.0, lse, w
    shifted_exp(n, k, logits, grad)
    for i in range(n):
        w = weight[i] if weight != NULL else 1.0
        lse = normalise_row(logits + i * k, k, grad + i * k)
        total += w * (lse - logits[i * k + labels[i]])
        grad[i * k + labels[i]] -= 1
        for j in range(k):
            grad[i * k + j] = <floating> (scale * w * grad[i * k + j])
    return scale * total


cdef inline double cross_entropy_probs_kernel(long n, long k, const floating* logits,
                                              const floating* target, const floating* weight,
                                              floating* grad, double scale) noexcept nogil:
    """l_i = sum_k t_ik * (logsumexp(z_i) - z_ik);
    grad = scale * w_i * (softmax(z_i) * sum_k t_ik - t_i)."""
    cdef long i, j
    cdef double total = 0.0, lse, w, mass, row
    shifted_exp(n, k, logits, grad)
    for i in range(n):
        w = weight[i] if weight != NULL else 1.0
        lse = normalise_row(logits + i * k, k, grad + i * k)
        mass = 0.0
        row = 0.0
        for j in range(k):
            mass += target[i * k + j]
            row += target[i * k + j] * (lse - logits[i * k + j])
        total += w * row
        for j in range(k):
            grad[i * k + j] = <floating> (scale * w * (grad[i * k + j] * mass - target[i * k + j]))
    return scale * total


cdef inline double bce_kernel(long n, long k, const floating* logits, const floating* target,
                              const floating* weight, floating* grad,
                              double scale) noexcept nogil:
    """l_i = sum_k max(z,0) - z*t + log1p(exp(-|z|)); grad = scale * w_i * (sigmoid(z) - t).

    Four passes, grad the scratch: log1p(exp(-|z|)) for every entry in one vector loop
    (bp_softplus_neg_abs), the sums in double, sigmoid(z) in another vector loop
    (bp_sigmoid_array, exp of -|z| only), and the scaled differences. Nothing
    overflows for logits of any size."""
    cdef long i, j, idx, count = n * k
    cdef double total = 0.0, w, row, z, t
    softplus_neg_abs(count, logits, grad)
    for i in range(n):
        w = weight[i] if weight != NULL else 1.0
        row = 0.0
        for j in range(k):
            idx = i * k + j
            z = logits[idx]
            row += (z if z > 0 else 0.0) - z * target[idx] + grad[idx]
        total += w * row
    sigmoid_array(count, logits, grad)
    for i in range(n):
        w = scale * (weight[i] if weight != NULL else 1.0)
        for j in range(k):
            idx = i * k + j
            grad[idx] = <floating> (w * (grad[idx] - target[idx]))
    return scale * total


cdef inline double poisson_kernel(long n, long k, const floating* logrates,
                                  const floating* target, const floating* weight,
                                  floating* grad, double scale) noexcept nogil:
    """l_i = sum_k exp(z) - t*z; grad = scale * w_i * (exp(z) - t), z the log-rate.

    Where exp(z) overflows, the element's loss and gradient are +inf (see the top of
    this file). A sample whose factor scale * w_i is 0 (weight 0) adds nothing to the
    value and gets a zero gradient, even where exp(z) overflows (no 0 * inf)."""
    cdef long i, j
    cdef double total = 0.0, w, c, row, z, t, rate
    for i in range(n):
        w = weight[i] if weight != NULL else 1.0
        c = scale * w
        if c == 0:
            for j in range(k):
                grad[i * k + j] = 0
            continue
        row = 0.0
        for j in range(k):
            z = logrates[i * k + j]
            t = target[i * k + j]
            rate = fexp(logrates[i * k + j])     # in the buffer's precision
            if rate <= DBL_MAX:
                row += rate - t * z
            else:
                row += rate                      # +inf: never inf - inf
            grad[i * k + j] = <floating> (c * (rate - t))
        total += w * row
    return scale * total
