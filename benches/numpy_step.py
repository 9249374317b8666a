"""The NumPy peer: a hand-written, preallocated training step for an MLP.

This is the floor any library must beat (benches/README.md): the cs231n-style step a
careful NumPy programmer writes, with every buffer allocated once in ``__init__`` and
every ufunc and matrix product writing through ``out=``. It uses no bpcore code, so
it doubles as an independent check of bpcore's arithmetic (test_steps.py compares the
weights after 20 steps).

The math is bpcore's (and PyTorch's):
  hidden layers  a = f(x.W + b), f one of relu, sigmoid 1/(1 + exp(-z)) or tanh,
                 the derivative from the activation as bpcore has it: relu' = [a > 0],
                 sigmoid' = a(1 - a), tanh' = 1 - a^2; the last layer is linear;
  MSE            mean of (out - y)^2 over all elements;
  cross-entropy  softmax with the row maximum subtracted, mean over samples;
  SGD            buf = momentum*buf + g;  p -= lr*buf   (p -= lr*g without momentum);
  Adam           m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
                 p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps),   bci = 1 - bi^t.

Like bpcore, the parameters live in one flat buffer (W, b are views into it) and the
gradients in another, so the optimizer update is a handful of whole-buffer ufuncs
rather than a loop over tensors. The bias rides in the matrix products (cs231n's "bias
trick", below), which saves a broadcast add and a column sum per layer: a quarter of
W1's step.
"""
import math

import numpy as np

ACTIVATIONS = ("relu", "sigmoid", "tanh")
LOSSES = ("mse", "cross_entropy")
OPTIMIZERS = ("sgd", "adam")


class NumpyStep:
    """A preallocated forward + loss + backward + update for one batch size.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first, e.g. ``(2, 16, 16, 1)``.
    batch : int
        The batch size every ``step`` receives.
    dtype : float32 or float64
    loss : "mse" (float targets of shape (batch, sizes[-1])) or "cross_entropy"
        (integer labels of shape (batch,), logits out).
    optimizer : "sgd" (``lr``, ``momentum``) or "adam" (``lr``, ``betas``, ``eps``).
    activation : "relu", "sigmoid" or "tanh"
        The activation of every hidden layer.
    weights : sequence of (W, b) or None
        Initial parameters, copied (W has shape (n_in, n_out)); He-normal with
        ``seed`` when None.
    """

    def __init__(self, sizes, batch, *, dtype=np.float64, loss="mse", optimizer="sgd",
                 lr=0.01, momentum=0.0, betas=(0.9, 0.999), eps=1e-8, weights=None,
                 seed=0, activation="relu"):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}; got {activation!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {optimizer!r}")
        self.sizes = tuple(int(s) for s in sizes)
        self.batch = int(batch)
        self.dtype = dtype = np.dtype(dtype)
        self.loss, self.optimizer, self.activation = loss, optimizer, activation
        self.lr, self.momentum, self.eps = lr, momentum, eps
        self.beta1, self.beta2 = betas
        self.steps = 0
        n, pairs = self.batch, list(zip(self.sizes[:-1], self.sizes[1:]))

        # One flat buffer for the parameters, one for the gradients. A layer's W
        # (n_in, n_out) followed by its b (n_out,) is one (n_in + 1, n_out) matrix Wb:
        # every layer input carries a last column of ones, so x.W + b is one product
        # and [dW; db] is one product with the input's transpose.
        total = sum(i * o + o for i, o in pairs)
        self.params = np.zeros(total, dtype)
        self.grads = np.zeros(total, dtype)
        self.Wb, self.dWb = [], []
        offset = 0
        for n_in, n_out in pairs:
            stop = offset + (n_in + 1) * n_out
            self.Wb.append(self.params[offset:stop].reshape(n_in + 1, n_out))
            self.dWb.append(self.grads[offset:stop].reshape(n_in + 1, n_out))
            offset = stop
        self.W = [Wb[:-1] for Wb in self.Wb]
        self.b = [Wb[-1] for Wb in self.Wb]
        if weights is None:
            rng = np.random.default_rng(seed)
            for W, (n_in, _) in zip(self.W, pairs):
                W[...] = rng.normal(0.0, math.sqrt(2.0 / n_in), W.shape)
        else:
            for W, b, (W0, b0) in zip(self.W, self.b, weights):
                W[...] = W0
                b[...] = b0

        # inputs[i]: layer i's input with its column of ones (inputs[0] receives X);
        # the hidden activations are written straight into the next layer's input.
        # upstream[i]: dL/d(inputs[i + 1]), whose ones column is computed and ignored;
        # derivative[i]: f' of hidden layer i (its ones column computed and ignored);
        # mask[i]: relu' as bool, before it is cast into derivative[i] (ReLU only);
        # ones[i]: the ones column of inputs[i + 1], which sigmoid and tanh, applied
        # to the whole (contiguous) buffer, overwrite: it is filled with 1 again.
        # Every elementwise operand is whole and contiguous, and row broadcasts go
        # through np.copyto into `wide`: a NumPy ufunc over a strided view, with a
        # broadcast operand or casting a bool mask allocates an iterator buffer (up
        # to 64 KB) on every call; np.copyto does not, matrix products take strides.
        widths = self.sizes
        self.inputs = [np.ones((n, w + 1), dtype) for w in widths[:-1]]
        self.output = np.empty((n, widths[-1]), dtype)
        self.upstream = [np.empty((n, w + 1), dtype) for w in widths[1:-1]]
        self.derivative = [np.empty((n, w + 1), dtype) for w in widths[1:-1]]
        self.mask = ([np.empty((n, w + 1), bool) for w in widths[1:-1]]
                     if activation == "relu" else [])
        self.ones = [inputs[:, -1] for inputs in self.inputs[1:]]
        k = self.sizes[-1]
        self.wide = np.empty((n, k), dtype)                # row max, row sum, widened
        self.delta_out = np.empty((n, k), dtype)           # dL/d(output)
        self.row_max = np.empty((n, 1), dtype)
        self.row_sum = np.empty((n, 1), dtype)
        self.row_offsets = np.arange(n, dtype=np.int64) * k
        self.label_index = np.empty(n, np.int64)           # flat index of (i, y_i)
        self.picked = np.empty(n, dtype)

        # Optimizer state and the scratch its update needs.
        # (``state`` names the buffers as bpcore's optimizers do.)
        self.velocity = np.zeros(total, dtype) if (optimizer == "sgd" and momentum) else None
        self.state = {} if self.velocity is None else {"momentum_buffer": self.velocity}
        if optimizer == "adam":
            self.exp_avg = np.zeros(total, dtype)
            self.exp_avg_sq = np.zeros(total, dtype)
            self.state = {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}
            self.scratch2 = np.empty(total, dtype)
            # the coefficients in the working precision, as bpcore's fused kernel has them
            one = dtype.type(1)
            self.one_minus_beta1 = one - dtype.type(self.beta1)
            self.one_minus_beta2 = one - dtype.type(self.beta2)
        self.scratch = np.empty(total, dtype)

    # ------------------------------------------------------------------ passes
    def forward(self, X):
        """Return the output (an internal buffer) after caching every layer's input."""
        n_in = self.sizes[0]
        np.copyto(self.inputs[0][:, :n_in], X)
        last, relu = len(self.Wb) - 1, self.activation == "relu"
        for i, Wb in enumerate(self.Wb):
            if i < last:
                nxt = self.inputs[i + 1]
                np.matmul(self.inputs[i], Wb, out=nxt[:, :-1])
                if relu:
                    np.maximum(nxt, 0, out=nxt)          # the ones column stays 1
                else:
                    self.squash(nxt, i)
            else:
                np.matmul(self.inputs[i], Wb, out=self.output)
        return self.output

    def squash(self, a, i):
        """Apply sigmoid or tanh in place to ``a``, hidden layer ``i``'s output with
        its ones column, and fill that column with 1 again. The ufuncs take the whole
        contiguous buffer: one loop, where the view without the ones column is one
        short loop per row (twice as slow at 16 units, measured)."""
        if self.activation == "sigmoid":
            # 1 / (1 + exp(-z)); below z = -709 (float64) or -88 (float32) exp
            # overflows to inf and NumPy warns, but the result is the limit, 0
            np.negative(a, out=a)
            np.exp(a, out=a)
            a += 1
            np.reciprocal(a, out=a)
        else:
            np.tanh(a, out=a)
        self.ones[i].fill(1)

    def loss_and_delta(self, output, y):
        """Return the loss value; write dL/d(output) into ``delta_out``."""
        delta, n, wide = self.delta_out, self.batch, self.wide
        if self.loss == "mse":
            scale = 1.0 / output.size
            np.subtract(output, y, out=delta)
            flat = delta.reshape(-1)
            value = scale * float(np.dot(flat, flat))
            delta *= 2.0 * scale
            return value
        # cross-entropy on logits: softmax(z - max) - onehot(y), over the batch size
        np.max(output, axis=1, out=self.row_max, keepdims=True)
        np.copyto(wide, self.row_max)
        np.subtract(output, wide, out=delta)
        np.exp(delta, out=delta)
        np.sum(delta, axis=1, out=self.row_sum, keepdims=True)
        np.copyto(wide, self.row_sum)
        delta /= wide
        np.add(self.row_offsets, y, out=self.label_index)
        np.take(output.reshape(-1), self.label_index, out=self.picked)
        # loss_i = log(sum) + max - z_{y_i}
        np.log(self.row_sum, out=self.row_sum)
        self.row_sum += self.row_max
        value = (float(self.row_sum.sum()) - float(self.picked.sum())) / n
        flat = delta.reshape(-1)
        np.take(flat, self.label_index, out=self.picked)
        self.picked -= 1
        np.put(flat, self.label_index, self.picked)
        delta *= 1.0 / n
        return value

    def backward(self):
        """Write every parameter gradient (overwritten, not accumulated)."""
        delta = self.delta_out
        for i in range(len(self.Wb) - 1, -1, -1):
            np.matmul(self.inputs[i].T, delta, out=self.dWb[i])      # [dW; db]
            if i > 0:
                upstream, derivative = self.upstream[i - 1], self.derivative[i - 1]
                np.matmul(delta, self.Wb[i].T, out=upstream)
                a = self.inputs[i]
                if self.activation == "relu":
                    # relu'(z) from a = relu(z): 1 where a > 0, else 0 (0 at z = 0,
                    # like bpcore and PyTorch)
                    np.greater(a, 0, out=self.mask[i - 1])
                    np.copyto(derivative, self.mask[i - 1])
                elif self.activation == "sigmoid":
                    np.subtract(1, a, out=derivative)            # a (1 - a)
                    derivative *= a
                else:
                    np.multiply(a, a, out=derivative)            # 1 - a^2
                    np.subtract(1, derivative, out=derivative)
                upstream *= derivative
                delta = upstream[:, :-1]

    def update(self):
        """One optimizer step over the flat parameter buffer."""
        self.steps += 1
        p, g, scratch = self.params, self.grads, self.scratch
        if self.optimizer == "sgd":
            if self.velocity is not None:
                self.velocity *= self.momentum
                self.velocity += g
                g = self.velocity
            np.multiply(g, self.lr, out=scratch)
            p -= scratch
            return
        m, v, scratch2 = self.exp_avg, self.exp_avg_sq, self.scratch2
        bias_correction1 = 1.0 - self.beta1 ** self.steps
        bias_correction2 = 1.0 - self.beta2 ** self.steps
        m *= self.beta1
        np.multiply(g, self.one_minus_beta1, out=scratch)
        m += scratch
        v *= self.beta2
        np.multiply(g, self.one_minus_beta2, out=scratch)
        scratch *= g
        v += scratch
        np.sqrt(v, out=scratch)                             # denominator
        scratch /= math.sqrt(bias_correction2)
        scratch += self.eps
        np.multiply(m, self.lr / bias_correction1, out=scratch2)
        scratch2 /= scratch
        p -= scratch2

    def step(self, X, y):
        """Forward, loss, backward and update on one batch; return the loss value."""
        output = self.forward(X)
        value = self.loss_and_delta(output, y)
        self.backward()
        self.update()
        return value
