"""bpcore.interop.torch and DLPack, against PyTorch itself as the oracle.

Round trips (torch -> bpcore -> torch and back) must give identical tensors; outputs
and gradients are compared with torch's autograd on the same network (1e-12 in
float64); state dicts with torch's own ``state_dict``/``load_state_dict``; the torch
block with ``torch.autograd.gradcheck`` (central differences). Skipped without torch.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import bpcore as bp  # noqa: E402
from bpcore.interop import torch as bt  # noqa: E402

ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "scaled_sigmoid"]
DTYPES = [torch.float32, torch.float64]
# the folder that holds the bpcore under test: subprocesses import the same one
IMPORTED_FROM = os.path.dirname(os.path.dirname(os.path.abspath(bp.__file__)))


def torch_activation(name, width, dtype):
    """The torch module of a bpcore activation (None for identity), built by hand."""
    if name == "identity":
        return None
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "tanh":
        return nn.Tanh()
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)
    module = bt.scaled_sigmoid_module()(width, dtype=dtype)
    with torch.no_grad():
        module.scale.uniform_(0.5, 2.0)       # not the initial ones
    return module


def torch_net(activation, dtype, seed=0, widths=(3, 5, 4, 2)):
    """A Sequential of Linear layers, the activation after each hidden one."""
    torch.manual_seed(seed)
    children = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        children.append(nn.Linear(n_in, n_out, dtype=dtype))
        if i < len(widths) - 2:
            act = torch_activation(activation, n_out, dtype)
            if act is not None:
                children.append(act)
    with torch.no_grad():
        for child in children:
            if isinstance(child, nn.Linear):
                child.bias.uniform_(-1, 1)        # not torch's small default biases
    return nn.Sequential(*children)


def run_subprocess(code):
    path = os.pathsep.join(p for p in (IMPORTED_FROM, os.environ.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": path})


# ================================================================ lazy import
def test_importing_bpcore_and_interop_does_not_import_torch():
    result = run_subprocess(
        "import sys, bpcore, bpcore.interop, bpcore.interop.torch\n"
        "assert bpcore.interop.torch.__name__ == 'bpcore.interop.torch'\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_helper_without_torch_says_what_to_install():
    result = run_subprocess(
        "import sys\n"
        "sys.modules['torch'] = None      # torch cannot be imported\n"
        "import bpcore as bp\n"
        "from bpcore.interop import torch as bt\n"
        "try:\n"
        "    bt.to_torch(bp.Model([bp.Dense(2, 1)]))\n"
        "except ImportError as error:\n"
        "    print('ImportError:', error)\n")
    assert result.returncode == 0, result.stderr
    assert "ImportError: bpcore.interop.torch needs PyTorch" in result.stdout


# ================================================================ round trips
def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_torch_to_bpcore_to_torch_gives_identical_tensors(activation, dtype):
    net = torch_net(activation, dtype)
    model = bt.from_torch(net)
    assert model.dtype == np.dtype(str(dtype).removeprefix("torch."))
    back = bt.to_torch(model)
    assert [type(m) for m in back] == [type(m) for m in net]
    assert repr(back) == repr(net)
    assert_same_state(back, net)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_bpcore_to_torch_to_bpcore_gives_identical_parameters(activation, dtype):
    model = bp.Model([bp.Dense(3, 6, activation, negative_slope=0.3, dropout=0.25),
                      bp.Dense(6, 4, activation, negative_slope=0.3), bp.Dense(4, 2)],
                     dtype=dtype, seed=1)
    if model.layers[0].c is not None:
        model.layers[0].c[...] = np.linspace(0.5, 2, 6)
    back = bt.from_torch(bt.to_torch(model))
    assert back.dtype == model.dtype
    assert repr(back) == repr(model)
    assert [layer.negative_slope for layer in back.layers if layer.activation == "leaky_relu"] \
        == [0.3] * (2 if activation == "leaky_relu" else 0)
    np.testing.assert_array_equal(back.params, model.params)
    assert back.params.dtype == model.params.dtype


def test_from_torch_and_to_torch_copy_the_tensors():
    net = torch_net("tanh", torch.float64)
    model = bt.from_torch(net)
    before = model.params.copy()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    np.testing.assert_array_equal(model.params, before)
    back = bt.to_torch(model)
    snapshot = {k: v.clone() for k, v in back.state_dict().items()}
    model.params[...] += 1.0
    for key, value in back.state_dict().items():
        assert torch.equal(value, snapshot[key]), key


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_outputs_and_gradients_agree_with_torch_float64(activation):
    net = torch_net(activation, torch.float64, seed=3)
    model = bt.from_torch(net)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(7, 3))
    G = rng.normal(size=(7, 2))                     # dL/doutput
    Xt = torch.tensor(X, requires_grad=True)
    out = net(Xt)
    out.backward(torch.tensor(G))
    np.testing.assert_allclose(model.forward(X), out.detach().numpy(), rtol=0, atol=1e-12)
    model.zero_grad()
    dX = model.backward(G)
    np.testing.assert_allclose(dX, Xt.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.predict(X), out.detach().numpy(), rtol=0, atol=1e-12)
    # every parameter's gradient, matched by torch's names
    named = dict(net.named_parameters())
    assert list(bt.state_dict(model)) == list(named)
    grads = {}
    for i, layer in enumerate(model.layers):
        grads[f"layers.{i}.W"] = layer.dW.T
        grads[f"layers.{i}.b"] = layer.db
        if layer.dc is not None:
            grads[f"layers.{i}.c"] = layer.dc
    torch_grads = [p.grad.numpy() for p in net.parameters()]
    # torch's parameter order is bpcore's: weight, bias (scale after its Linear's bias)
    assert len(torch_grads) == len(grads)
    for ours, theirs in zip(grads.values(), torch_grads):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_outputs_agree_with_torch_float32(activation):
    net = torch_net(activation, torch.float32, seed=4)
    model = bt.from_torch(net)
    X = np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32)
    expected = net(torch.from_numpy(X)).detach().numpy()
    assert model.predict(X).dtype == np.float32
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-5, atol=1e-6)


def test_dropout_maps_to_the_layer_before_it_and_the_mode_is_kept():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8, dtype=torch.float64), nn.ReLU(), nn.Dropout(0.3),
                        nn.Identity(), nn.Linear(8, 3, dtype=torch.float64), nn.Dropout(0.1),
                        nn.Linear(3, 1, dtype=torch.float64))
    model = bt.from_torch(net)
    assert [(layer.activation, layer.dropout) for layer in model.layers] == \
        [("relu", 0.3), ("identity", 0.1), ("identity", 0.0)]
    assert model.training is True
    net.eval()
    assert bt.from_torch(net).training is False
    X = np.random.default_rng(2).normal(size=(5, 4))
    np.testing.assert_allclose(bt.from_torch(net).predict(X),
                               net(torch.from_numpy(X)).detach().numpy(), rtol=0, atol=1e-12)
    back = bt.to_torch(model.eval())
    assert back.training is False
    assert [type(m).__name__ for m in back] == ["Linear", "ReLU", "Dropout", "Linear",
                                               "Dropout", "Linear"]
    assert [m.p for m in back if isinstance(m, nn.Dropout)] == [0.3, 0.1]


def test_dropout_in_training_mode_is_inverted_dropout_like_torchs():
    # one unit, a zero-weight Linear with bias 1: the output is the dropout mask alone,
    # 0 or 1/(1-p) in both libraries; the mean is 1 (to sampling error)
    net = nn.Sequential(nn.Linear(1, 1, dtype=torch.float64), nn.Dropout(0.4))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.fill_(1.0)
    model = bt.from_torch(net, seed=0)
    X = np.zeros((20000, 1))
    ours = np.asarray(model.forward(X)).ravel()
    theirs = net(torch.from_numpy(X)).detach().numpy().ravel()
    for values in (ours, theirs):
        np.testing.assert_allclose(np.unique(values), [0.0, 1 / 0.6])
        assert abs(values.mean() - 1) < 0.05
        assert abs((values == 0).mean() - 0.4) < 0.02


# ======================================================== what is refused
@pytest.mark.parametrize("children, error, words", [
    (lambda d: [nn.Linear(3, 4, dtype=d), nn.ReLU(), nn.Conv2d(1, 1, 1, dtype=d)],
     TypeError, "module[2] (Conv2d) is not supported"),
    (lambda d: [nn.Linear(3, 4, dtype=d), nn.GELU()], TypeError, "module[1] (GELU)"),
    (lambda d: [nn.Linear(3, 4, dtype=d), nn.Sequential(nn.ReLU())], TypeError,
     "module[1] (Sequential)"),
    (lambda d: [nn.ReLU(), nn.Linear(3, 4, dtype=d)], ValueError, "module[0] (ReLU)"),
    (lambda d: [nn.Linear(3, 4, dtype=d), nn.ReLU(), nn.Tanh()], ValueError,
     "module[2] (Tanh)"),
    (lambda d: [nn.Linear(3, 4, dtype=d), nn.Dropout(0.2), nn.ReLU()], ValueError,
     "module[2] (ReLU)"),
    (lambda d: [nn.Dropout(0.2), nn.Linear(3, 4, dtype=d)], ValueError, "module[0] (Dropout)"),
    (lambda d: [nn.Linear(3, 4, dtype=d), nn.Dropout(0.2), nn.Dropout(0.2)], ValueError,
     "module[2] (Dropout)"),
    (lambda d: [nn.Linear(3, 4, dtype=d), nn.Dropout(1.0)], ValueError, "has p=1.0"),
    (lambda d: [nn.Linear(3, 4, bias=False, dtype=d)], ValueError,
     "module[0] (Linear) has no bias"),
    (lambda d: [nn.Linear(3, 4, dtype=d), nn.Linear(5, 2, dtype=d)], ValueError,
     "module[1] (Linear) has in_features=5"),
    (lambda d: [nn.Linear(3, 4, dtype=d), nn.LeakyReLU(-0.1)], ValueError,
     "negative_slope=-0.1"),
    (lambda d: [nn.Identity()], ValueError, "at least one Linear"),
    (lambda d: [nn.Linear(3, 4, dtype=torch.float16)], TypeError, "torch.float16"),
    (lambda d: [nn.Linear(3, 4, dtype=torch.float32), nn.Linear(4, 1, dtype=torch.float64)],
     TypeError, "one dtype"),
])
def test_from_torch_refuses_what_bpcore_cannot_express(children, error, words):
    with pytest.raises(error) as caught:
        bt.from_torch(nn.Sequential(*children(torch.float64)))
    assert words in str(caught.value)


def test_from_torch_refuses_a_module_that_is_not_sequential():
    with pytest.raises(TypeError, match="module must be a torch.nn.Sequential.*got Linear"):
        bt.from_torch(nn.Linear(2, 2))


@pytest.mark.parametrize("helper", [bt.to_torch, bt.state_dict, bt.as_torch_function])
def test_helpers_refuse_what_is_not_a_model(helper):
    with pytest.raises(TypeError, match="model must be a bpcore Model; got Sequential"):
        helper(nn.Sequential(nn.Linear(2, 2)))


# ================================================================ state dicts
def a_model(dtype=np.float64):
    return bp.Model([bp.Dense(3, 5, "scaled_sigmoid", dropout=0.2),
                     bp.Dense(5, 4, "relu"), bp.Dense(4, 2)], dtype=dtype, seed=0)


def test_state_dict_has_torchs_names_shapes_and_values():
    model = a_model()
    model.layers[0].c[...] = np.arange(1, 6)
    ours = bt.state_dict(model)
    theirs = bt.to_torch(model).state_dict()
    assert list(ours) == list(theirs) == ["0.weight", "0.bias", "1.scale", "3.weight",
                                          "3.bias", "5.weight", "5.bias"]
    for key in theirs:
        assert ours[key].shape == theirs[key].shape
        assert torch.equal(ours[key], theirs[key])
    # torch itself takes it, strictly
    net = torch_like = bt.to_torch(a_model())
    assert str(torch_like.load_state_dict(bt.state_dict(model), strict=True)) == \
        "<All keys matched successfully>"
    X = np.random.default_rng(0).normal(size=(4, 3))
    np.testing.assert_allclose(net.eval()(torch.from_numpy(X)).detach().numpy(),
                               model.predict(X), rtol=0, atol=1e-12)


def test_state_dict_tensors_share_memory_with_the_model():
    model = bp.Model([bp.Dense(2, 3, "relu"), bp.Dense(3, 1)], seed=0)
    sd = bt.state_dict(model)
    with torch.no_grad():
        for tensor in sd.values():
            tensor.zero_()
        sd["2.bias"].fill_(7.0)
    np.testing.assert_array_equal(model.predict(np.ones((3, 2))), np.full((3, 1), 7.0))


def test_load_state_dict_from_torch_gives_torchs_outputs():
    net = torch_net("tanh", torch.float64, seed=5)
    model = bp.Model([bp.Dense(3, 5, "tanh"), bp.Dense(5, 4, "tanh"), bp.Dense(4, 2)], seed=9)
    keys = bt.load_state_dict(model, net.state_dict())
    assert keys.missing_keys == [] and keys.unexpected_keys == []
    assert str(keys) == str(net.load_state_dict(net.state_dict()))
    X = np.random.default_rng(3).normal(size=(6, 3))
    np.testing.assert_allclose(model.predict(X), net(torch.from_numpy(X)).detach().numpy(),
                               rtol=0, atol=1e-12)


def test_load_state_dict_converts_dtype_and_takes_numpy_arrays():
    net = torch_net("relu", torch.float32, seed=6)
    model = bp.Model([bp.Dense(3, 5, "relu"), bp.Dense(5, 4, "relu"), bp.Dense(4, 2)], seed=0)
    bt.load_state_dict(model, {k: v.numpy() for k, v in net.state_dict().items()})
    reference = bt.to_torch(model)
    for key, value in net.state_dict().items():
        assert torch.equal(reference.state_dict()[key], value.to(torch.float64))


def edited(sd, drop=(), add=None):
    out = {k: v.clone() for k, v in sd.items() if k not in drop}
    out.update(add or {})
    return out


@pytest.mark.parametrize("drop, add", [
    (("3.bias",), None),
    ((), {"9.weight": torch.zeros(2, 2, dtype=torch.float64)}),
    (("1.scale", "0.weight"), {"extra": torch.zeros(1, dtype=torch.float64)}),
], ids=["missing", "unexpected", "both"])
def test_strict_and_non_strict_loads_report_keys_like_torch(drop, add):
    source = a_model()
    source.params[...] = np.random.default_rng(0).normal(size=source.n_params)
    sd = edited(bt.state_dict(source), drop, add)
    # torch's verdict on the same state dict, for the equivalent Sequential
    net = bt.to_torch(a_model())
    with pytest.raises(RuntimeError) as torch_error:
        net.load_state_dict(sd, strict=True)
    torch_keys = bt.to_torch(a_model()).load_state_dict(sd, strict=False)

    model = a_model()
    before = model.params.copy()
    with pytest.raises(ValueError) as caught:
        bt.load_state_dict(model, sd, strict=True)
    np.testing.assert_array_equal(model.params, before)        # nothing loaded
    for line in str(torch_error.value).splitlines()[1:]:
        assert line.strip() in str(caught.value)               # torch's own wording

    keys = bt.load_state_dict(model, sd, strict=False)
    assert keys == torch_keys
    assert keys.missing_keys == torch_keys.missing_keys
    assert keys.unexpected_keys == torch_keys.unexpected_keys
    # the keys that matched were loaded, the missing ones kept
    loaded = bt.state_dict(model)
    reference = bt.state_dict(a_model())
    for key in loaded:
        expected = sd[key] if key in sd else reference[key]
        assert torch.equal(loaded[key], expected), key


@pytest.mark.parametrize("strict", [True, False])
def test_a_shape_mismatch_is_an_error_in_both_modes_and_changes_nothing(strict):
    sd = {k: v.clone() + 1 for k, v in bt.state_dict(a_model()).items()}
    sd["5.weight"] = torch.zeros(2, 5, dtype=torch.float64)       # (2, 4) expected
    with pytest.raises(RuntimeError, match="size mismatch for 5.weight"):
        bt.to_torch(a_model()).load_state_dict(sd, strict=strict)        # torch refuses too
    model = a_model()
    before = model.params.copy()
    with pytest.raises(ValueError, match=r"size mismatch for 5\.weight: copying a param with "
                                         r"shape \(2, 5\) from checkpoint, the shape in "
                                         r"current model is \(2, 4\)"):
        bt.load_state_dict(model, sd, strict=strict)
    np.testing.assert_array_equal(model.params, before)


@pytest.mark.parametrize("bad, error, words", [
    ([("a", 1)], TypeError, "state_dict must be a mapping"),
    ({0: torch.zeros(1)}, TypeError, "state_dict's keys must be str; got int 0"),
    ({"0.bias": "zeros"}, TypeError, "state_dict['0.bias'] must be a real tensor or array"),
    ({"0.bias": torch.zeros(5, dtype=torch.complex128)}, TypeError, "complex128"),
    ({"0.bias": torch.full((5,), float("nan"), dtype=torch.float64)}, ValueError,
     "state_dict['0.bias'] contains NaN or infinity"),
])
def test_load_state_dict_refuses_bad_input_and_changes_nothing(bad, error, words):
    model = a_model()
    before = model.params.copy()
    with pytest.raises(error) as caught:
        bt.load_state_dict(model, bad, strict=False)
    assert words in str(caught.value)
    np.testing.assert_array_equal(model.params, before)
    with pytest.raises(TypeError, match="strict must be True or False; got str 'yes'"):
        bt.load_state_dict(model, bt.state_dict(a_model()), strict="yes")
    np.testing.assert_array_equal(model.params, before)


# ===================================================== a block in a torch graph
def sandwich(activation, seed, dropout=0.0):
    """torch Linear -> bpcore block -> torch Linear, float64, and the bpcore model."""
    torch.manual_seed(seed)
    model = bp.Model([bp.Dense(4, 6, activation, negative_slope=0.2, dropout=dropout),
                      bp.Dense(6, 3, "tanh")], seed=seed)
    if model.layers[0].c is not None:
        model.layers[0].c[...] = np.linspace(0.5, 1.5, 6)
    block = bt.as_torch_function(model)
    net = nn.Sequential(nn.Linear(2, 4, dtype=torch.float64), block,
                        nn.Linear(3, 2, dtype=torch.float64))
    return net, block, model


def flat_grad(sequential):
    """The gradients of a Sequential's parameters in bpcore's flat layout: per layer
    W = weight.T (row-major), then b, then c (torch lists them in that order)."""
    return torch.cat([p.grad.T.reshape(-1) if name.endswith("weight") else p.grad
                      for name, p in sequential.named_parameters()])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradcheck_of_the_block_inside_a_torch_model(activation):
    net, block, model = sandwich(activation, seed=1)
    net.eval()
    X = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    params = (net[0].weight, net[0].bias, block.params, net[2].weight)
    assert torch.autograd.gradcheck(lambda x, *p: net(x), (X, *params), eps=1e-6,
                                    atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_the_block_agrees_with_the_equivalent_torch_network(activation):
    net, block, model = sandwich(activation, seed=2)
    reference = nn.Sequential(net[0], bt.to_torch(model), net[2])   # (the same Linears)
    X = torch.randn(8, 2, dtype=torch.float64)
    target = torch.randn(8, 2, dtype=torch.float64)

    loss = ((net(X) - target) ** 2).sum()
    loss.backward()
    ours = (net[0].weight.grad.clone(), net[2].weight.grad.clone(), block.params.grad.clone())
    net.zero_grad()
    ref_loss = ((reference(X) - target) ** 2).sum()
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours[0], net[0].weight.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours[1], net[2].weight.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours[2], flat_grad(reference[1]), rtol=0, atol=1e-12)
    # model.grads holds the last backward's gradient
    np.testing.assert_array_equal(model.grads, ours[2].numpy())


def test_two_forwards_before_backward_give_torchs_gradients():
    net, block, model = sandwich("sigmoid", seed=3)
    reference = nn.Sequential(net[0], bt.to_torch(model), net[2])
    X1 = torch.randn(4, 2, dtype=torch.float64)
    X2 = torch.randn(4, 2, dtype=torch.float64)      # same size: the same workspace
    (net(X1).sum() + (net(X2) ** 2).sum()).backward()
    ours = block.params.grad.clone()
    first = net[0].weight.grad.clone()
    net.zero_grad()
    (reference(X1).sum() + (reference(X2) ** 2).sum()).backward()
    torch.testing.assert_close(first, net[0].weight.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours, flat_grad(reference[1]), rtol=0, atol=1e-12)


def test_two_forwards_with_active_dropout_refuse_the_stale_backward():
    net, block, model = sandwich("relu", seed=4, dropout=0.5)
    net.train()
    assert model.training
    first = net(torch.randn(4, 2, dtype=torch.float64))
    second = net(torch.randn(4, 2, dtype=torch.float64))
    second.sum().backward()                          # the latest pass: fine
    with pytest.raises(RuntimeError, match="ran another forward before this output's"):
        first.sum().backward()


def test_module_mode_sets_the_models_mode():
    net, block, model = sandwich("relu", seed=5, dropout=0.5)
    net.eval()
    assert model.training is False
    X = torch.randn(3, 2, dtype=torch.float64)
    torch.testing.assert_close(net(X), net(X), rtol=0, atol=0)     # no dropout in eval
    net.train()
    assert model.training is True


def test_a_torch_optimizer_trains_the_bpcore_model_in_place():
    net, block, model = sandwich("tanh", seed=6)
    reference = nn.Sequential(bt.to_torch(model))
    X = torch.randn(6, 4, dtype=torch.float64)
    for module in (block, reference):
        optimizer = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
        for _ in range(3):
            optimizer.zero_grad()
            (module(X) ** 2).mean().backward()
            optimizer.step()
    trained = bt.to_torch(model).state_dict()
    for key, value in reference[0].state_dict().items():
        torch.testing.assert_close(trained[key], value, rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.predict(X.numpy()), reference(X).detach().numpy(),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("make, error, words", [
    (lambda: torch.zeros(3, 4, dtype=torch.float32), TypeError,
     "input must have the model's dtype torch.float64; got torch.float32"),
    (lambda: torch.zeros(3, 5, dtype=torch.float64), ValueError,
     "input must have shape (n_samples, 4); got shape (3, 5)"),
    (lambda: np.zeros((3, 4)), TypeError, "input must be a torch.Tensor; got ndarray"),
])
def test_the_block_refuses_bad_input(make, error, words):
    _, block, model = sandwich("relu", seed=7)
    before = model.params.copy()
    with pytest.raises(error) as caught:
        block(make())
    assert words in str(caught.value)
    np.testing.assert_array_equal(model.params, before)


def test_the_block_refuses_a_rebound_parameter():
    _, block, _ = sandwich("relu", seed=8)
    block.params = nn.Parameter(block.params.detach().clone())
    with pytest.raises(RuntimeError, match="params no longer shares memory with model.params"):
        block(torch.zeros(2, 4, dtype=torch.float64))


# ======================================================================= DLPack
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_torch_from_dlpack_shares_the_flat_buffers(dtype):
    model = bp.Model([bp.Dense(2, 3, "relu"), bp.Dense(3, 1)], dtype=dtype, seed=0)
    params = torch.from_dlpack(model.params)
    grads = torch.from_dlpack(model.grads)
    assert params.dtype == getattr(torch, np.dtype(dtype).name)
    assert params.data_ptr() == model.params.ctypes.data
    # a write through torch is what predict sees: all weights 0, the output bias 2.5
    params.zero_()
    offset = next(start for name, *_, start in model.parameter_table if name == "layers.1.b")
    params[offset] = 2.5
    np.testing.assert_array_equal(model.predict(np.ones((4, 2), dtype)),
                                  np.full((4, 1), 2.5, dtype))
    # and torch sees what backward writes: MSE on the output bias alone, by hand
    X, y = np.ones((4, 2), dtype), np.zeros((4, 1), dtype)
    model.loss_and_grad(X, y, bp.MSELoss())
    assert float(grads[offset]) == pytest.approx(2 * 2.5)     # d/db mean((b - 0)^2)
    assert float(grads[:offset].abs().sum()) == 0.0


def test_jax_dlpack_reads_the_flat_buffers():
    jax_dlpack = pytest.importorskip("jax.dlpack")
    model = bp.Model([bp.Dense(2, 3, "tanh"), bp.Dense(3, 1)], dtype=np.float32, seed=0)
    array = jax_dlpack.from_dlpack(model.params)
    np.testing.assert_array_equal(np.asarray(array), model.params)


def test_jax_gradients_of_the_dlpack_params_match_bpcore_grads():
    # JAX as the peer: a jnp forward over the flat buffer that JAX read through
    # DLPack, differentiated by jax.grad, against bpcore's backward into model.grads
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    model = bp.Model([bp.Dense(3, 5, "tanh"), bp.Dense(5, 2, "sigmoid")],
                     dtype=np.float32, seed=1)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((7, 3)).astype(np.float32)
    y = rng.standard_normal((7, 2)).astype(np.float32)
    table = {name: (start, shape) for name, _layer, _attr, shape, start
             in model.parameter_table}

    def loss(flat):
        def view(name):
            start, shape = table[name]
            return flat[start:start + int(np.prod(shape))].reshape(shape)
        h = jnp.tanh(X @ view("layers.0.W") + view("layers.0.b"))
        out = jax.nn.sigmoid(h @ view("layers.1.W") + view("layers.1.b"))
        return jnp.mean((out - y) ** 2)

    flat = jax.dlpack.from_dlpack(model.params)
    value, grad = jax.value_and_grad(loss)(flat)
    bp_value, _ = model.loss_and_grad(X, y, bp.MSELoss())
    assert float(bp_value) == pytest.approx(float(value), rel=1e-5)
    np.testing.assert_allclose(model.grads, np.asarray(grad), rtol=1e-4, atol=1e-6)
    # and back: NumPy reads JAX's gradient through DLPack, into the flat buffer
    model.grads[...] = np.from_dlpack(grad)
    np.testing.assert_array_equal(model.grads, np.asarray(grad))


# ========================================================================= docs
DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "docs", "interop.md")


def test_the_examples_of_docs_interop_run(capsys):
    if not os.path.exists(DOC):
        pytest.skip("docs/interop.md is not beside the tests")
    with open(DOC) as file:
        text = file.read()
    blocks = [part.split("```", 1)[0] for part in text.split("```python\n")[1:]]
    assert len(blocks) >= 5
    namespace = {}
    for block in blocks:
        exec(compile(block, DOC, "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    # the comments' claims: the difference to torch, the names, the keys, gradcheck
    assert float(printed[1]) < 1e-12
    assert printed[2] == "scaled_sigmoid"
    assert printed[3] == "['0.weight', '0.bias', '3.weight', '3.bias']"
    assert printed[4] == "<All keys matched successfully>"
    assert "missing_keys=['5.bias'], unexpected_keys=[]" in printed[5]
    assert printed[6] == "True"
    # the DLPack loop trained: the loss is below the untrained model's
    model, X, y = namespace["model"], namespace["X"], namespace["y"]
    untrained = bp.Model([bp.Dense(1, 8, "tanh"), bp.Dense(8, 1)], seed=0)
    assert float(printed[7]) < bp.MSELoss()(untrained.predict(X), y)[0]
    assert float(printed[7]) == pytest.approx(bp.MSELoss()(model.predict(X), y)[0])
