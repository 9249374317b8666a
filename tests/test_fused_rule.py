"""Dispatch by declaration: what fuses is what a class declares in its own body
(bpcore.nn.fused), and names resolve through the one optimizer registry."""
import numpy as np
import pytest

import bpcore as bp
from bpcore.nn import fused
from bpcore.optim import OPTIMIZERS


def small_model(seed=0):
    return bp.Model([bp.Dense(3, 5, "tanh"), bp.Dense(5, 2)], seed=seed)


def data(rng):
    return rng.normal(size=(6, 3)), rng.integers(0, 2, 6)


def test_a_subclass_named_like_a_builtin_does_not_take_over_its_name():
    class Adam(bp.Adam):                          # a user's own Adam, changing the update
        def _update(self):
            self.model.params[...] = 0.0

    model = small_model()
    history = model.fit(np.ones((4, 3)), np.zeros(4, dtype=np.int64), loss="cross_entropy",
                        optimizer="adam", epochs=1, verbose=0)
    assert OPTIMIZERS["adam"] is bp.Adam
    assert np.any(model.params != 0)             # bpcore's Adam ran, not the user's
    assert len(history["loss"]) == 1


def test_an_undeclared_optimizer_subclass_steps_itself(rng):
    # Its own _update must run after the kernel's forward and backward: the kernel's
    # update would silently compute bp.SGD's step
    class HalfSGD(bp.SGD):
        def _update(self):
            self.model.params[...] -= 0.5 * self.lr * self.model.grads

    X, y = data(rng)
    model, reference = small_model(), small_model()
    loss = bp.CrossEntropyLoss()
    value = model.train_step(X, y, loss, HalfSGD(model, lr=0.1))
    expected, grads = reference.loss_and_grad(X, y, loss)
    reference.params[...] -= 0.05 * grads
    assert value == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(model.params, reference.params, rtol=1e-12, atol=1e-14)
    assert not model._fused.fused_update          # the kernel left the update to it
    assert fused.optimizer_kind(HalfSGD(model)) is None
    assert not fused.fuses_whole_step(loss, HalfSGD(model))


def test_a_subclass_that_declares_the_kind_is_fused_knowingly(rng):
    class LoggedSGD(bp.SGD):
        fused_kind = "sgd"                        # same update, opted in

    X, y = data(rng)
    model, reference = small_model(), small_model()
    loss = bp.CrossEntropyLoss()
    value = model.train_step(X, y, loss, LoggedSGD(model, lr=0.1, momentum=0.9))
    expected = reference.train_step(X, y, loss, bp.SGD(reference, lr=0.1, momentum=0.9))
    assert model._fused is not None and model._fused.fused_update
    assert value == expected
    np.testing.assert_array_equal(model.params, reference.params)


def test_loss_subclasses_follow_the_same_rule(rng):
    class Doubled(bp.MSELoss):
        def compute(self, output, target, weight, scale):
            value, grad = super().compute(output, target, weight, scale)
            return 2 * value, 2 * grad

    class Declared(bp.MSELoss):
        fused_kind = "mse"

    assert fused.loss_kind(Doubled(), False) is None
    assert fused.loss_kind(Declared(), False) == "mse"
    assert fused.loss_kind(bp.CrossEntropyLoss(), True) == "cross_entropy_labels"
    assert fused.loss_kind(bp.CrossEntropyLoss(), False) == "cross_entropy_probs"
    X, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    model, reference = small_model(), small_model()
    value = model.train_step(X, y, Doubled(), bp.SGD(model, lr=0.1))
    base = reference.train_step(X, y, bp.MSELoss(), bp.SGD(reference, lr=0.2))
    assert value == pytest.approx(2 * base, rel=1e-12)     # its own compute ran
    np.testing.assert_allclose(model.params, reference.params, rtol=1e-12, atol=1e-14)


def test_adamw_rmsprop_rprop_are_not_fused_into_the_kernel():
    model = small_model()
    for cls in (bp.AdamW, bp.RMSprop, bp.Rprop):
        assert fused.optimizer_kind(cls(model)) is None
    assert fused.optimizer_kind(bp.SGD(model)) == "sgd"
    assert fused.optimizer_kind(bp.Adam(model)) == "adam"


def test_register_optimizer_adds_a_name_and_refuses_a_taken_one():
    class Plain(bp.SGD):
        pass

    bp.register_optimizer("plain_sgd_for_test", Plain)
    try:
        model = small_model()
        model.fit(np.ones((4, 3)), np.zeros(4, dtype=np.int64), loss="cross_entropy",
                  optimizer="plain_sgd_for_test", epochs=1, verbose=0)
        with pytest.raises(ValueError, match="optimizer name 'adam' is taken"):
            bp.register_optimizer("adam", Plain)
        with pytest.raises(TypeError, match="cls must be an Optimizer subclass"):
            bp.register_optimizer("other_name_for_test", object)
        with pytest.raises(ValueError, match="name must be an identifier"):
            bp.register_optimizer("two words", Plain)
    finally:
        del OPTIMIZERS["plain_sgd_for_test"]
    with pytest.raises(ValueError, match="optimizer must be one of"):
        small_model().fit(np.ones((4, 3)), np.zeros(4, dtype=np.int64),
                          loss="cross_entropy", optimizer="plain_sgd_for_test", verbose=0)
