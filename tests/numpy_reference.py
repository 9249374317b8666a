"""Plain NumPy references of every bpcore kernel: the oracle the fast path must equal.

Written from the formulas, independently of src/: no shared code with bpcore.
"""
import numpy as np


def sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def activation(name, z, c=None, slope=0.01):
    """Return (a, f'(z), gate) for pre-activation z; gate is sigmoid(z) for scaled units."""
    if name == "identity":
        return z.copy(), np.ones_like(z), None
    if name == "sigmoid":
        s = sigmoid(z)
        return s, s * (1 - s), None
    if name == "tanh":
        t = np.tanh(z)
        return t, 1 - t * t, None
    if name == "relu":
        return np.maximum(z, 0), (z > 0).astype(z.dtype), None
    if name == "leaky_relu":
        return np.where(z > 0, z, slope * z), np.where(z > 0, 1.0, slope).astype(z.dtype), None
    if name == "scaled_sigmoid":
        g = sigmoid(z)
        return c * g, c * g * (1 - g), g
    raise KeyError(name)


def dense_forward(X, W, b, name, c=None):
    z = X @ W + b
    return activation(name, z, c) + (z,)


def dense_backward(X, W, upstream, deriv, gate):
    """Return (dW, db, dc, dX) for one layer from dL/da = upstream."""
    delta = upstream * deriv
    dc = None if gate is None else (upstream * gate).sum(axis=0)
    return X.T @ delta, delta.sum(axis=0), dc, delta @ W.T


def network_forward(layers, X):
    """layers: list of dicts W, b, c, activation. Returns (output, caches)."""
    caches, a = [], X
    for layer in layers:
        out, deriv, gate, z = dense_forward(a, layer["W"], layer["b"], layer["activation"],
                                            layer.get("c"))
        caches.append((a, deriv, gate))
        a = out
    return a, caches


def network_backward(layers, caches, grad_output):
    """Return (list of per-layer dicts dW, db, dc, and dL/dX)."""
    grads, upstream = [None] * len(layers), grad_output
    for i in range(len(layers) - 1, -1, -1):
        inputs, deriv, gate = caches[i]
        dW, db, dc, dX = dense_backward(inputs, layers[i]["W"], upstream, deriv, gate)
        grads[i] = {"W": dW, "b": db, "c": dc}
        upstream = dX
    return grads, upstream


def _weights(n, weight):
    return np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)


def mse(output, target, weight=None, reduction="mean"):
    n, k = output.shape
    w = _weights(n, weight)
    r = output - target
    per_sample = (r * r).sum(axis=1)
    scale = 1.0 / (w.sum() * k) if reduction == "mean" else 1.0
    return scale * (w * per_sample).sum(), 2 * scale * w[:, None] * r


def log_softmax(z):
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def cross_entropy(logits, target, weight=None, reduction="mean"):
    n, k = logits.shape
    w = _weights(n, weight)
    if target.ndim == 1:
        target = np.eye(k)[target]
    logp = log_softmax(logits)
    per_sample = -(target * logp).sum(axis=1)
    scale = 1.0 / w.sum() if reduction == "mean" else 1.0
    grad = np.exp(logp) * target.sum(axis=1, keepdims=True) - target
    return scale * (w * per_sample).sum(), scale * w[:, None] * grad


def bce_with_logits(logits, target, weight=None, reduction="mean"):
    n, k = logits.shape
    w = _weights(n, weight)
    per_element = np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits)))
    scale = 1.0 / (w.sum() * k) if reduction == "mean" else 1.0
    value = scale * (w * per_element.sum(axis=1)).sum()
    return value, scale * w[:, None] * (sigmoid(logits) - target)


def poisson_nll(log_rates, target, weight=None, reduction="mean"):
    """PyTorch's PoissonNLLLoss(log_input=True, full=False): exp(z) - t z per element."""
    n, k = log_rates.shape
    w = _weights(n, weight)
    rate = np.exp(log_rates)
    per_element = rate - target * log_rates
    scale = 1.0 / (w.sum() * k) if reduction == "mean" else 1.0
    value = scale * (w * per_element.sum(axis=1)).sum()
    return value, scale * w[:, None] * (rate - target)


def sgd_step(p, g, buf, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """PyTorch's SGD (dampening 0). Returns new (p, buf)."""
    g = g + weight_decay * p
    if momentum:
        buf = momentum * buf + g
        g = g + momentum * buf if nesterov else buf
    return p - lr * g, buf


def adam_step(p, g, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    """PyTorch's Adam (L2 weight decay added to the gradient). Returns new (p, m, v)."""
    g = g + weight_decay * p
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    bc1, bc2 = 1 - beta1 ** t, 1 - beta2 ** t
    return p - (lr / bc1) * m / (np.sqrt(v) / np.sqrt(bc2) + eps), m, v


def adamw_step(p, g, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2):
    """AdamW (Loshchilov & Hutter; PyTorch's form): decay the weights, then Adam on the
    plain gradient. Returns new (p, m, v)."""
    p = p * (1 - lr * weight_decay)
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def rmsprop_step(p, g, v, c, buf, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
    """RMSprop (Tieleman & Hinton; centered: Graves 2013; PyTorch's form, no bias
    correction). Returns new (p, v, c, buf); c and buf pass through when unused."""
    g = g + weight_decay * p
    v = alpha * v + (1 - alpha) * g ** 2
    if centered:
        c = alpha * c + (1 - alpha) * g
        rms = np.sqrt(v - c ** 2)
    else:
        rms = np.sqrt(v)
    direction = g / (rms + eps)
    if momentum:
        buf = momentum * buf + direction
        direction = buf
    return p - lr * direction, v, c, buf


def irprop_minus_step(p, g, prev, delta, eta_minus=0.5, eta_plus=1.2, delta_min=1e-6,
                      delta_max=50.0):
    """iRPROP- (Igel & Huesken 2000, fig. 2): grow/shrink each step size by the sign of
    g_{t-1} * g_t, forget the gradient where it flipped, move by -sign(g) * delta.
    Returns new (p, prev, delta)."""
    product = g * prev
    delta = np.where(product > 0, np.minimum(delta * eta_plus, delta_max),
                     np.where(product < 0, np.maximum(delta * eta_minus, delta_min), delta))
    g = np.where(product < 0, 0.0, g)
    return p - np.sign(g) * delta, g, delta
