"""validation_split draws a seeded random validation set, stratified by class for a
classifier's loss; validation_order="last" keeps the old choice (the last rows)."""
import numpy as np
import pytest

import bpcore as bp
from bpcore.train.loop import split_indices


def sorted_by_class(n_per_class=40, classes=3, seed=0):
    # like iris: rows sorted by class, so the last rows are all one class
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    X = rng.normal(size=(y.size, 2)) + 3 * np.eye(classes, 2)[y]
    return X, y


def test_split_indices_partition_the_rows_and_keep_class_shares():
    labels = np.repeat([0, 1, 2, 3], [50, 30, 15, 5])
    train, held = split_indices(100, 20, seed=7, labels=labels)
    assert sorted(np.concatenate([train, held]).tolist()) == list(range(100))
    assert held.size == 20
    counts = np.bincount(labels[held], minlength=4)
    np.testing.assert_array_equal(counts, [10, 6, 3, 1])        # 20% of each class
    again = split_indices(100, 20, seed=7, labels=labels)
    np.testing.assert_array_equal(again[1], held)               # seeded
    other = split_indices(100, 20, seed=8, labels=labels)[1]
    assert set(other) != set(held)


def test_split_indices_rounds_shares_to_the_exact_count():
    labels = np.repeat([0, 1, 2], [7, 7, 7])
    for n_val in range(1, 21):
        train, held = split_indices(21, n_val, seed=0, labels=labels)
        assert held.size == n_val and train.size == 21 - n_val
        counts = np.bincount(labels[held], minlength=3)
        assert counts.max() - counts.min() <= 1


def test_data_sorted_by_class_gets_a_fair_validation_set():
    X, y = sorted_by_class()
    model = bp.Model([bp.Dense(2, 16, "relu"), bp.Dense(16, 3)], seed=0)
    history = model.fit(X, y, loss="cross_entropy", optimizer=bp.Adam(model, lr=0.05),
                        epochs=40, validation_split=0.25, metrics=["accuracy"], verbose=0,
                        seed=0)
    assert history["val_accuracy"][-1] > 0.8
    # the old choice holds out the last rows as given: here one class only
    truths = []

    def record(y_true, y_pred):
        truths.append(np.asarray(y_true))
        return 0.0

    model = bp.Model([bp.Dense(2, 16, "relu"), bp.Dense(16, 3)], seed=0)
    model.fit(X, y, loss="cross_entropy", epochs=1, validation_split=0.25, verbose=0,
              seed=0, validation_order="last", metrics=[record])
    training, validation = truths
    np.testing.assert_array_equal(validation, y[-30:])
    np.testing.assert_array_equal(training, y[:-30])
    assert set(validation.tolist()) == {2}


def test_the_validation_rows_are_those_split_indices_names():
    X, y = sorted_by_class(10)
    seen = {}

    def record(y_true, y_pred):
        seen.setdefault("sizes", []).append(len(y_true))
        return 0.0

    model = bp.Model([bp.Dense(2, 4, "relu"), bp.Dense(4, 3)], seed=0)
    model.fit(X, y, loss="cross_entropy", epochs=1, validation_split=0.2, verbose=0,
              seed=11, metrics=[record])
    assert seen["sizes"] == [24, 6]                       # training rows, then validation
    train, held = split_indices(30, 6, 11, y)
    np.testing.assert_array_equal(np.bincount(y[held], minlength=3), [2, 2, 2])


def test_validation_order_is_checked():
    X, y = sorted_by_class(5)
    model = bp.Model([bp.Dense(2, 4), bp.Dense(4, 3)], seed=0)
    with pytest.raises(ValueError, match="validation_order must be one of"):
        model.fit(X, y, loss="cross_entropy", validation_split=0.2, verbose=0,
                  validation_order="first")


def test_soft_bce_targets_are_split_at_random_not_by_value():
    rng = np.random.default_rng(0)
    X, t = rng.normal(size=(100, 3)), rng.uniform(size=100)
    lowest = set(np.argsort(t)[:20].tolist())
    seen = []
    for seed in (1, 2, 3):
        model = bp.Model([bp.Dense(3, 1)], seed=0)
        rows = []

        def record(y_true, y_pred, rows=rows):
            rows.append(np.asarray(y_true))
            return 0.0

        model.fit(X, t, loss="bce", optimizer=bp.SGD(model, lr=0.0), validation_split=0.2,
                  verbose=0, seed=seed, metrics=[record])
        validation = rows[1]
        seen.append(tuple(sorted(validation.tolist())))
        assert set(np.flatnonzero(np.isin(t, validation)).tolist()) != lowest
    assert len(set(seen)) == 3


def test_equal_remainders_are_shared_at_random():
    labels = np.repeat(np.arange(10), 3)
    chosen = {tuple(sorted(set(labels[split_indices(30, 3, seed, labels)[1]].tolist())))
              for seed in range(20)}
    assert len(chosen) > 1


def test_a_custom_loss_with_a_list_target_splits():
    X = np.random.default_rng(0).normal(size=(8, 2))
    y = [[float(i)] for i in range(8)]
    seen = []

    def loss(output, target):
        target = np.asarray(target, dtype=float)
        seen.append(len(target))
        return float(np.mean((output - target) ** 2)), 2 * (output - target) / output.size

    for order in ("random", "last"):
        model = bp.Model([bp.Dense(2, 1)], seed=0)
        model.fit(X, y, loss=loss, optimizer="sgd", validation_split=0.25, verbose=0,
                  shuffle=False, batch_size=8, validation_order=order)
    assert seen[:2] == [6, 2]
