"""bpcore against PyTorch as an independent oracle (float64 throughout in torch).

Losses, whole-network forward/backward for every activation, SGD/Adam trajectories,
gradient clipping and the tutorial 001 training loop. Skipped where torch is absent.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import bpcore as bp  # noqa: E402

T64 = torch.float64
ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "scaled_sigmoid"]


def t64(array, requires_grad=False):
    """A float64 torch tensor holding a copy of ``array``."""
    return torch.tensor(np.asarray(array, dtype=np.float64), dtype=T64,
                        requires_grad=requires_grad)


def npy(tensor):
    return tensor.detach().cpu().numpy()


# ===================================================================== losses
N, K = 7, 5


def _loss_case(name, rng, extreme, dtype):
    """(bpcore loss class, output, bpcore target, torch function of (out, reduction))."""
    out = rng.normal(0, 2, size=(N, K))
    if extreme:
        # every row carries logits of +-1e4 next to moderate ones
        out[:, 0] = 1e4
        out[::2, 1] = -1e4
        out[1::2, 2] = -1e4
        out[3, :] = [-1e4, -1e4, 1e4, -1e4, 1e4]
    out = out.astype(dtype)
    if name == "mse":
        target = rng.normal(0, 2, size=(N, K)).astype(dtype)
        tt = t64(target)
        return bp.MSELoss, out, target, lambda o, r: F.mse_loss(o, tt, reduction=r)
    if name == "ce_labels":
        labels = rng.integers(0, K, size=N)
        labels[:3] = [0, 1, 2]           # a right label at +1e4, a wrong one at -1e4 ...
        tt = torch.tensor(labels, dtype=torch.int64)
        return (bp.CrossEntropyLoss, out, labels.astype(np.int64),
                lambda o, r: F.cross_entropy(o, tt, reduction=r))
    if name == "ce_probs":
        probs = rng.dirichlet(np.ones(K), size=N)
        probs[0] = [0.0, 1.0, 0.0, 0.0, 0.0]     # all mass on a -1e4 logit
        probs[1] = [0.0, 0.0, 0.0, 0.0, 0.0]     # a row without mass (torch allows it)
        probs[2] = 1.5 * probs[2]                # mass != 1
        probs = probs.astype(dtype)
        tt = t64(probs)
        return bp.CrossEntropyLoss, out, probs, lambda o, r: F.cross_entropy(o, tt, reduction=r)
    if name == "bce":
        target = rng.uniform(0, 1, size=(N, K))
        target[0, :] = [0.0, 1.0, 1.0, 0.0, 0.5]
        target[1, :] = [1.0, 0.0, 0.0, 1.0, 0.5]
        target = target.astype(dtype)
        tt = t64(target)
        return (bp.BCEWithLogitsLoss, out, target,
                lambda o, r: F.binary_cross_entropy_with_logits(o, tt, reduction=r))
    if name == "poisson":
        counts = rng.poisson(3.0, size=(N, K))
        counts[0, :] = 0                         # a row of zero counts
        counts = counts.astype(dtype)
        tt = t64(counts)
        return (bp.PoissonLoss, out, counts,
                lambda o, r: F.poisson_nll_loss(o, tt, log_input=True, full=False,
                                                reduction=r))
    raise AssertionError(name)


def _torch_loss(fn, out, reduction):
    o = t64(out, requires_grad=True)
    value = fn(o, reduction)
    value.backward()
    return value.item(), npy(o.grad)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", ["mse", "ce_labels", "ce_probs", "bce", "poisson"])
def test_loss_value_and_gradient_equal_torch_float64(name, reduction):
    rng = np.random.default_rng(11)
    cls, out, target, fn = _loss_case(name, rng, extreme=False, dtype=np.float64)
    value, grad = cls(reduction=reduction)(out, target)
    want_value, want_grad = _torch_loss(fn, out, reduction)
    assert grad.dtype == np.float64 and grad.shape == out.shape
    np.testing.assert_allclose(value, want_value, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype, rtol, atol", [(np.float64, 1e-12, 1e-14),
                                               (np.float32, 1e-5, 1e-7)],
                         ids=["float64", "float32"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", ["mse", "ce_labels", "ce_probs", "bce"])
def test_loss_with_extreme_logits_is_finite_and_equals_torch(name, reduction, dtype, rtol,
                                                             atol):
    rng = np.random.default_rng(12)
    cls, out, target, fn = _loss_case(name, rng, extreme=True, dtype=dtype)
    value, grad = cls(reduction=reduction)(out, target)
    assert grad.dtype == dtype and grad.shape == out.shape
    assert np.isfinite(value) and np.isfinite(grad).all()
    # torch in float64 on the very same (float32-rounded) numbers
    want_value, want_grad = _torch_loss(fn, out.astype(np.float64), reduction)
    assert np.isfinite(want_value) and np.isfinite(want_grad).all()
    np.testing.assert_allclose(value, want_value, rtol=rtol, atol=atol)
    np.testing.assert_allclose(grad, want_grad, rtol=rtol, atol=atol)


# ==================================================== networks and torch twins
class TorchNet(torch.nn.Module):
    """The torch twin of a bpcore Model: nn.Linear layers (weight = W.T) + activations."""

    def __init__(self, model):
        super().__init__()
        self.activations = [layer.activation for layer in model.layers]
        self.slopes = [layer.negative_slope for layer in model.layers]
        self.linears = torch.nn.ModuleList()
        self.scales = torch.nn.ParameterList()
        for layer in model.layers:
            linear = torch.nn.Linear(layer.n_in, layer.n_out, dtype=T64)
            with torch.no_grad():
                linear.weight.copy_(t64(layer.W.T))
                linear.bias.copy_(t64(layer.b))
            self.linears.append(linear)
            if layer.c is not None:
                self.scales.append(torch.nn.Parameter(t64(layer.c)))

    def forward(self, x):
        scales = iter(self.scales)
        for linear, act, slope in zip(self.linears, self.activations, self.slopes):
            z = linear(x)
            if act == "identity":
                x = z
            elif act == "sigmoid":
                x = torch.sigmoid(z)
            elif act == "tanh":
                x = torch.tanh(z)
            elif act == "relu":
                x = torch.relu(z)
            elif act == "leaky_relu":
                x = F.leaky_relu(z, negative_slope=slope)
            elif act == "scaled_sigmoid":
                x = next(scales) * torch.sigmoid(z)
            else:
                raise AssertionError(act)
        return x

    def bp_order(self):
        """Parameters in bpcore's flat order (per layer: W, b, then c)."""
        scales = iter(self.scales)
        for linear, act in zip(self.linears, self.activations):
            yield "W", linear.weight
            yield "b", linear.bias
            if act == "scaled_sigmoid":
                yield "c", next(scales)

    def flat(self, grads=False):
        """Parameters (or their gradients) flattened in bpcore's layout."""
        parts = []
        for attr, p in self.bp_order():
            value = p.grad if grads else p
            value = value.T if attr == "W" else value
            parts.append(npy(value).ravel())
        return np.concatenate(parts)


def randomize(model, rng):
    """Non-trivial values for every parameter (biases and scales included)."""
    for layer in model.layers:
        layer.W[...] = rng.normal(0, 0.7, layer.W.shape)
        layer.b[...] = rng.normal(0, 0.3, layer.b.shape)
        if layer.c is not None:
            layer.c[...] = rng.uniform(0.5, 1.5, layer.c.shape)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_three_layer_network_forward_backward_equal_torch(activation):
    rng = np.random.default_rng(21)
    model = bp.Model([bp.Dense(4, 6, activation), bp.Dense(6, 5, activation),
                      bp.Dense(5, 3, activation)], seed=0)
    randomize(model, rng)
    net = TorchNet(model)
    X = rng.normal(0, 1.5, size=(9, 4))
    upstream = rng.normal(size=(9, 3))

    out = np.array(model.forward(X))
    model.zero_grad()
    dX = np.array(model.backward(upstream))

    x = t64(X, requires_grad=True)
    y = net(x)
    y.backward(t64(upstream))

    np.testing.assert_allclose(out, npy(y), rtol=1e-12, atol=1e-14)
    for (attr, p), (name, _, grad) in zip(net.bp_order(), model.named_parameters()):
        assert name.endswith(attr)
        want = npy(p.grad.T if attr == "W" else p.grad)
        np.testing.assert_allclose(grad, want, rtol=1e-12, atol=1e-14, err_msg=name)
    np.testing.assert_allclose(model.grads, net.flat(grads=True), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dX, npy(x.grad), rtol=1e-12, atol=1e-14)
    assert np.abs(dX).max() > 1e-3          # the comparison is not of zeros


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_loss_and_grad_equals_torch_cross_entropy(activation):
    """The fused forward -> loss -> backward path against torch, one network per activation."""
    rng = np.random.default_rng(22)
    model = bp.Model([bp.Dense(4, 6, activation), bp.Dense(6, 3)], seed=0)
    randomize(model, rng)
    net = TorchNet(model)
    X, labels = rng.normal(size=(8, 4)), rng.integers(0, 3, 8)
    value, grads = model.loss_and_grad(X, labels, bp.CrossEntropyLoss())
    loss = F.cross_entropy(net(t64(X)), torch.tensor(labels, dtype=torch.int64))
    loss.backward()
    np.testing.assert_allclose(value, loss.item(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads, net.flat(grads=True), rtol=1e-12, atol=1e-14)


# =============================================================== trajectories
def _trajectory_setup():
    rng = np.random.default_rng(31)
    model = bp.Model([bp.Dense(3, 6, "tanh"), bp.Dense(6, 4, "scaled_sigmoid"),
                      bp.Dense(4, 2)], seed=0)
    randomize(model, rng)
    X, Y = rng.normal(size=(16, 3)), rng.normal(size=(16, 2))
    return model, TorchNet(model), X, Y


def _run_both(model, net, bp_opt, torch_opt, X, Y, steps=50):
    criterion, xt, yt = bp.MSELoss(), t64(X), t64(Y)
    losses, torch_losses = [], []
    for _ in range(steps):
        bp_opt.zero_grad()
        value, _ = model.loss_and_grad(X, Y, criterion)
        bp_opt.step()
        losses.append(value)

        torch_opt.zero_grad()
        loss = F.mse_loss(net(xt), yt)
        loss.backward()
        torch_opt.step()
        torch_losses.append(loss.item())
    return np.array(losses), np.array(torch_losses)


SGD_CASES = [
    dict(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0),
    dict(lr=0.1, momentum=0.0, nesterov=False, weight_decay=1e-2),
    dict(lr=0.05, momentum=0.9, nesterov=False, weight_decay=0.0),
    dict(lr=0.05, momentum=0.9, nesterov=False, weight_decay=1e-2),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.0),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
]


def _ids(options):
    return ",".join(f"{k}={v}" for k, v in options.items())


@pytest.mark.parametrize("options", SGD_CASES, ids=_ids)
def test_sgd_trajectory_equals_torch(options):
    model, net, X, Y = _trajectory_setup()
    start = model.params.copy()
    losses, want = _run_both(model, net, bp.SGD(model, **options),
                             torch.optim.SGD(net.parameters(), **options), X, Y)
    np.testing.assert_allclose(losses, want, rtol=1e-10)
    np.testing.assert_allclose(model.params, net.flat(), rtol=1e-10, atol=1e-13)
    assert np.abs(model.params - start).max() > 1e-2     # the parameters did move


ADAM_CASES = [
    dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0),
    dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2),
    dict(lr=0.02, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.0),
    dict(lr=0.02, betas=(0.8, 0.95), eps=1e-6, weight_decay=5e-2),
]


@pytest.mark.parametrize("options", ADAM_CASES, ids=_ids)
def test_adam_trajectory_equals_torch(options):
    model, net, X, Y = _trajectory_setup()
    start = model.params.copy()
    losses, want = _run_both(model, net, bp.Adam(model, **options),
                             torch.optim.Adam(net.parameters(), **options), X, Y)
    np.testing.assert_allclose(losses, want, rtol=1e-10)
    np.testing.assert_allclose(model.params, net.flat(), rtol=1e-10, atol=1e-13)
    assert np.abs(model.params - start).max() > 1e-2


# =================================================================== clipping
@pytest.mark.parametrize("factor", [0.1, 1.0, 10.0], ids=["clips", "at-norm", "no-clip"])
def test_clip_grad_norm_equals_torch(factor):
    model, net, X, Y = _trajectory_setup()
    model.loss_and_grad(X, Y, bp.MSELoss(reduction="sum"))
    F.mse_loss(net(t64(X)), t64(Y), reduction="sum").backward()
    np.testing.assert_allclose(model.grads, net.flat(grads=True), rtol=1e-12, atol=1e-14)
    before = model.grads.copy()
    norm = float(np.linalg.norm(before))
    max_norm = factor * norm

    total = bp.clip_grad_norm(model, max_norm)
    want_total = torch.nn.utils.clip_grad_norm_(list(net.parameters()), max_norm)
    np.testing.assert_allclose(total, want_total.item(), rtol=1e-12)
    np.testing.assert_allclose(model.grads, net.flat(grads=True), rtol=1e-12, atol=1e-14)
    if factor > 1:
        np.testing.assert_array_equal(model.grads, before)       # untouched
    else:
        assert np.linalg.norm(model.grads) < norm                # clipped
        np.testing.assert_allclose(np.linalg.norm(model.grads), max_norm * norm / (norm + 1e-6),
                                   rtol=1e-12)


# ============================================================== tutorial 001 loop
def test_tutorial001_loop_equals_torch():
    """nn.Linear(1, 1) on x = [1..4], y = 2x, SGD(lr=0.01), MSELoss, zero_grad / backward /
    clip_grad_norm_(max_norm=1.0) / step for 100 epochs, from bpcore's initial weights."""
    x = np.array([[1.0], [2.0], [3.0], [4.0]])
    y = 2 * x
    model = bp.Model([bp.Dense(1, 1)], seed=0)
    optimizer, criterion = bp.SGD(model, lr=0.01), bp.MSELoss()

    linear = torch.nn.Linear(1, 1, dtype=T64)
    with torch.no_grad():
        linear.weight.copy_(t64(model.layers[0].W.T))
        linear.bias.copy_(t64(model.layers[0].b))
    torch_opt = torch.optim.SGD(linear.parameters(), lr=0.01)
    torch_criterion = torch.nn.MSELoss()
    xt, yt = t64(x), t64(y)

    losses, torch_losses, norms, torch_norms = [], [], [], []
    for _epoch in range(100):
        value, grad = criterion(model.forward(x), y)
        optimizer.zero_grad()
        model.backward(grad)
        norms.append(bp.clip_grad_norm(model, max_norm=1.0))
        optimizer.step()
        losses.append(value)

        loss = torch_criterion(linear(xt), yt)
        torch_opt.zero_grad()
        loss.backward()
        torch_norms.append(torch.nn.utils.clip_grad_norm_(linear.parameters(),
                                                          max_norm=1.0).item())
        torch_opt.step()
        torch_losses.append(loss.item())

    assert len(losses) == 100
    np.testing.assert_allclose(losses, torch_losses, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(norms, torch_norms, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        [model.layers[0].W[0, 0], model.layers[0].b[0]],
        [linear.weight.item(), linear.bias.item()], rtol=1e-12, atol=1e-15)
    assert max(norms) > 1.0              # clipping was exercised
    assert losses[-1] < losses[0]        # and it learns
