"""Class labels of any kind in fit/partial_fit, kept as model.classes.

The oracle of every training test is the same model trained on the integer codes of
the labels, made here with ``np.unique(labels, return_inverse=True)``: the parameters
must be bit-identical and the predictions, mapped through the classes, the same.
scikit-learn's metrics (where installed) and the loss objects called on the codes
are the oracles of the scores."""
import copy
import pickle

import numpy as np
import pytest

import bpcore as bp


def data(n=90, k=3, seed=0):
    X, y = bp.datasets.spirals(n, n_classes=k, noise=0.2, seed=seed)
    return X, y


def build(n_out=3, seed=0):
    return bp.Model([bp.Dense(2, 8, "tanh"), bp.Dense(8, n_out)], seed=seed)


def train(labels, X, n_out, loss, **options):
    model = build(n_out)
    options = {"epochs": 3, "batch_size": 16, "verbose": 0, "seed": 5, **options}
    history = model.fit(X, labels, loss=loss, optimizer=bp.Adam(model, lr=0.05), **options)
    return model, history


def codes_of(labels):
    classes, codes = np.unique(np.asarray(labels), return_inverse=True)
    return classes, codes


X3, Y3 = data()
X2, Y2 = data(k=2, seed=1)

# (name, labels, n_out, loss): each is one kind of user labels
CASES = [
    ("strings", np.array(["setosa", "versicolor", "virginica"])[Y3], 3, "cross_entropy"),
    ("one-to-K", Y3 + 1, 3, "cross_entropy"),
    ("sparse-integers", np.array([-7, 10, 400])[Y3], 3, "cross_entropy"),
    ("integer-valued-floats", (Y3 + 1).astype(float), 3, "cross_entropy"),
    ("python-list-of-strings", [["a", "b", "c"][i] for i in Y3], 3, "cross_entropy"),
    ("bools-cross-entropy", Y2.astype(bool), 2, "cross_entropy"),
    ("strings-bce", np.array(["no", "yes"])[Y2], 1, "bce"),
    ("one-two-bce", Y2 + 1, 1, "bce"),
    ("minus-one-one-bce", 2 * Y2 - 1, 1, "bce"),
    ("bools-bce", Y2.astype(bool), 1, "bce"),
]


@pytest.mark.parametrize("name, labels, n_out, loss", CASES, ids=[c[0] for c in CASES])
def test_labels_train_exactly_like_their_integer_codes(name, labels, n_out, loss):
    X = X3 if n_out == 3 else X2
    classes, codes = codes_of(labels)
    target = codes.astype(float) if loss == "bce" else codes
    model, history = train(labels, X, n_out, loss, validation_split=0.2, metrics=["accuracy"])
    reference, expected = train(target, X, n_out, loss, validation_split=0.2,
                                metrics=["accuracy"])
    assert model.params.tobytes() == reference.params.tobytes()
    assert history.history == expected.history           # built-in accuracy unchanged
    np.testing.assert_array_equal(model.classes, classes)
    output = reference.predict(X)
    index = output.argmax(axis=1) if n_out > 1 else (output[:, 0] > 0).astype(int)
    predicted = model.predict_labels(X)
    np.testing.assert_array_equal(predicted, classes[index])
    assert predicted.dtype == classes.dtype
    np.testing.assert_array_equal(model.predict(X), output)          # raw output


def test_labels_0_to_k_minus_1_are_column_indices_even_when_some_are_missing():
    X, y = X3, np.where(Y3 == 1, 2, Y3)                 # only classes 0 and 2
    model, _ = train(y, X, 3, "cross_entropy", epochs=2)
    np.testing.assert_array_equal(model.classes, [0, 1, 2])
    assert model.classes.dtype == y.dtype
    # one-hot probabilities are the same targets, with no labels to encode
    reference, _ = train(np.eye(3)[y], X, 3, "cross_entropy", epochs=2)
    assert reference.classes is None
    np.testing.assert_allclose(model.params, reference.params, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(model.predict_labels(X),
                                  reference.predict(X).argmax(axis=1))


def test_zero_one_floats_and_soft_targets_under_bce_are_their_own_codes():
    X = X2
    model, _ = train(Y2.astype(float), X, 1, "bce")
    np.testing.assert_array_equal(model.classes, [0.0, 1.0])
    assert model.classes.dtype == np.float64
    soft = np.where(Y2 == 1, 0.9, 0.1)
    model, _ = train(soft, X, 1, "bce")
    assert model.classes is None                         # probabilities are not labels
    reference = build(1)
    loss, optimizer = bp.BCEWithLogitsLoss(), bp.Adam(reference, lr=0.05)
    # the oracle: the same epochs run by hand with the loss on the soft targets
    for epoch in range(3):
        order = np.random.default_rng([5, epoch]).permutation(len(X))
        for start in range(0, len(X), 16):
            rows = order[start:start + 16]
            reference.train_step(X[rows], soft[rows], loss, optimizer)
    np.testing.assert_allclose(model.params, reference.params, rtol=1e-12, atol=1e-14)


def test_metrics_see_the_users_labels():
    metrics = pytest.importorskip("sklearn.metrics")
    X, (X_val, y_val_codes) = X2[:70], (X2[70:], Y2[70:])
    names = np.array(["no", "yes"])
    y, y_val = names[Y2[:70]], names[y_val_codes]

    def f1_yes(y_true, y_pred):
        return metrics.f1_score(y_true, y_pred, pos_label="yes")

    model = bp.Model([bp.Dense(2, 8, "tanh"), bp.Dense(8, 2)], seed=0)
    history = model.fit(X, y, loss="cross_entropy", epochs=4, verbose=0, seed=0,
                        validation_data=(X_val, y_val),
                        metrics=[metrics.accuracy_score, f1_yes, "accuracy"])
    predicted, predicted_val = model.predict_labels(X), model.predict_labels(X_val)
    assert set(predicted.tolist()) <= {"no", "yes"}
    assert history["accuracy_score"][-1] == metrics.accuracy_score(y, predicted)
    assert history["accuracy"][-1] == np.mean(predicted == y)
    assert history["f1_yes"][-1] == pytest.approx(
        metrics.f1_score(y, predicted, pos_label="yes"), rel=1e-15)
    assert history["val_f1_yes"][-1] == pytest.approx(
        metrics.f1_score(y_val, predicted_val, pos_label="yes"), rel=1e-15)
    assert history["val_accuracy"][-1] == np.mean(predicted_val == y_val)
    # evaluate takes the labels too: its loss is the loss of the codes
    logs = model.evaluate(X_val, y_val, metrics=[f1_yes])
    value, _ = bp.CrossEntropyLoss()(model.predict(X_val), y_val_codes)
    assert logs["loss"] == pytest.approx(value, rel=1e-12)
    assert logs["f1_yes"] == history["val_f1_yes"][-1]


def test_metric_arguments_are_the_labels_of_each_row():
    seen = []

    def record(y_true, y_pred):
        seen.append((np.array(y_true), np.array(y_pred)))
        return 0.0

    labels = Y3 + 1
    model, _ = train(labels, X3, 3, "cross_entropy", epochs=1, metrics=[record],
                     shuffle=False)
    y_true, y_pred = seen[-1]
    np.testing.assert_array_equal(y_true, labels)
    np.testing.assert_array_equal(y_pred, model.predict_labels(X3))


def test_class_weight_is_keyed_by_the_users_labels():
    labels = np.array(["a", "b", "c"])[Y3]
    model, _ = train(labels, X3, 3, "cross_entropy", class_weight={"c": 3.0, "a": 0.5})
    reference, _ = train(Y3, X3, 3, "cross_entropy", class_weight={2: 3.0, 0: 0.5})
    assert model.params.tobytes() == reference.params.tobytes()
    balanced, _ = train(labels[:80], X3[:80], 3, "cross_entropy", class_weight="balanced")
    expected, _ = train(Y3[:80], X3[:80], 3, "cross_entropy", class_weight="balanced")
    assert balanced.params.tobytes() == expected.params.tobytes()


def test_the_validation_split_is_stratified_on_the_users_labels():
    labels = np.repeat(np.array(["rare", "common", "mid"]), [10, 60, 30])
    X = np.random.default_rng(0).normal(size=(100, 2))
    rows = []

    def record(y_true, y_pred):
        rows.append(np.array(y_true))
        return 0.0

    train(labels, X, 3, "cross_entropy", epochs=1, validation_split=0.2, metrics=[record])
    held = rows[1]
    assert held.size == 20
    for label, count in zip(*np.unique(labels, return_counts=True)):
        assert abs(np.sum(held == label) - 20 * count / 100) < 1


def test_partial_fit_needs_and_keeps_classes():
    labels = np.array(["a", "b", "c"])[Y3]
    first, second = slice(0, 45), slice(45, 90)
    partial = np.where(labels[first] == "c", "a", labels[first])     # no "c" yet
    model = build()
    optimizer = bp.SGD(model, lr=0.1)
    with pytest.raises(ValueError, match="pass classes= with all 3 labels"):
        model.partial_fit(X3[first], partial, loss="cross_entropy", optimizer=optimizer)
    assert model.classes is None
    model.partial_fit(X3[first], partial, loss="cross_entropy", optimizer=optimizer,
                      classes=["c", "a", "b"])
    model.partial_fit(X3[second], labels[second], loss="cross_entropy", optimizer=optimizer)
    np.testing.assert_array_equal(model.classes, ["a", "b", "c"])

    reference = build()
    reference_optimizer = bp.SGD(reference, lr=0.1)
    classes = np.array(["a", "b", "c"])
    for rows, batch in ((first, partial), (second, labels[second])):
        reference.partial_fit(X3[rows], np.searchsorted(classes, batch),
                              loss="cross_entropy", optimizer=reference_optimizer)
    assert model.params.tobytes() == reference.params.tobytes()

    before = model.params.copy()
    with pytest.raises(ValueError, match=r"y holds the labels \['d'\]"):
        model.partial_fit(X3[:2], ["a", "d"], loss="cross_entropy", optimizer=optimizer)
    with pytest.raises(ValueError, match="differ from the classes"):
        model.partial_fit(X3[:2], ["a", "b"], loss="cross_entropy", optimizer=optimizer,
                          classes=["a", "b", "x"])
    assert model.params.tobytes() == before.tobytes()
    np.testing.assert_array_equal(model.classes, classes)

    # fit starts over
    model.fit(X3, Y3 + 1, loss="cross_entropy", epochs=1, verbose=0)
    np.testing.assert_array_equal(model.classes, [1, 2, 3])
    model.fit(X3, np.eye(3)[Y3], loss="cross_entropy", epochs=1, verbose=0)
    assert model.classes is None


def test_fit_with_classes_fixes_the_encoding():
    labels = np.array(["b", "c"])[Y2]
    model, _ = train(labels, X2, 3, "cross_entropy", classes=["a", "b", "c"])
    np.testing.assert_array_equal(model.classes, ["a", "b", "c"])
    reference, _ = train(Y2 + 1, X2, 3, "cross_entropy")         # codes 1 and 2
    assert model.params.tobytes() == reference.params.tobytes()


def test_predict_labels_without_a_classifier_fit_gives_columns_and_zero_one():
    X = X3
    model = build(3)
    assert model.classes is None
    np.testing.assert_array_equal(model.predict_labels(X), model.predict(X).argmax(axis=1))
    one = build(1)
    labels = one.predict_labels(X)
    assert labels.dtype.kind == "i"
    np.testing.assert_array_equal(labels, (one.predict(X)[:, 0] > 0).astype(int))
    one.fit(X, np.sin(X[:, 0]), loss="mse", verbose=0)
    assert one.classes is None


def test_predict_proba_columns_follow_the_classes():
    labels = np.array(["z", "y", "x"])[Y3]          # sorted: x, y, z
    model, _ = train(labels, X3, 3, "cross_entropy")
    proba = model.predict_proba(X3)
    np.testing.assert_array_equal(model.classes[proba.argmax(axis=1)],
                                  model.predict_labels(X3))
    rows = labels == "x"
    classes, codes = codes_of(labels)
    assert classes[0] == "x" and np.all(codes[rows] == 0)


@pytest.mark.parametrize("how", ["pickle", "deepcopy", "copy"])
def test_copies_keep_the_classes(how):
    labels = np.array(["cat", "dog", "emu"])[Y3]
    model, _ = train(labels, X3, 3, "cross_entropy")
    copied = {"pickle": lambda m: pickle.loads(pickle.dumps(m)),
              "deepcopy": copy.deepcopy, "copy": copy.copy}[how](model)
    np.testing.assert_array_equal(copied.classes, model.classes)
    assert not np.shares_memory(copied.classes, model.classes)
    np.testing.assert_array_equal(copied.predict_labels(X3), model.predict_labels(X3))


# ----------------------------------------------------------------------- bad labels
BAD = [
    ("non-integer-floats", dict(y=Y3 + 0.5), ValueError, r"y holds the float 0\.5"),
    ("nan", dict(y=np.where(Y3 == 2, np.nan, Y3)), ValueError, "y holds nan"),
    ("none", dict(y=[None] + ["a"] * 89), TypeError, "y holds None"),
    ("mixed-kinds", dict(y=[1, "a", 2] * 30), TypeError,
     r"y mixes labels of the kinds \['number', 'string'\]"),
    ("too-many-classes", dict(y=np.arange(90) % 4 + 1), ValueError,
     r"y holds 4 classes \[1, 2, 3, 4\] but cross_entropy reads one class per output"),
    ("too-few-classes", dict(y=np.array(["a", "b"])[Y3 % 2]), ValueError,
     "y holds 2 classes .* pass classes= with all 3 labels"),
    ("bce-three-classes", dict(y=np.array(["a", "b", "c"])[Y3], n_out=1, loss="bce"),
     ValueError, "bce on one output scores two classes"),
    ("unseen-validation-label",
     dict(y=np.array(["a", "b", "c"])[Y3], validation_data=(X3[:3], ["a", "b", "q"])),
     ValueError, r"validation_data y holds the labels \['q'\]"),
    ("classes-count", dict(y=Y3 + 1, classes=[1, 2]), ValueError,
     "classes must list the 3 labels of a model with 3 outputs; got 2"),
    ("classes-repeated", dict(y=Y3 + 1, classes=[1, 2, 2, 3]), ValueError,
     "classes must list distinct labels; got 2 2 times"),
    ("classes-missing-a-label", dict(y=Y3 + 1, classes=[1, 2, 4]), ValueError,
     r"y holds the labels \[3\], which are not among the classes \[1, 2, 4\]"),
    ("classes-with-mse", dict(y=np.zeros((90, 3)), loss="mse", classes=[0, 1, 2]),
     ValueError, "classes names the labels of a classifier"),
    ("class-weight-key", dict(y=np.array(["a", "b", "c"])[Y3], class_weight={"d": 2.0}),
     ValueError, r"class_weight has key 'd'; keys must be class labels among"),
]


@pytest.mark.parametrize("name, options, error, match", BAD, ids=[b[0] for b in BAD])
def test_bad_labels_raise_and_change_nothing(name, options, error, match):
    options = dict(options)
    n_out, loss = options.pop("n_out", 3), options.pop("loss", "cross_entropy")
    y = options.pop("y")
    model = build(n_out)
    optimizer = bp.Adam(model, lr=0.05)
    first, first_loss = ((np.array(["p", "q", "r"])[Y3], "cross_entropy") if n_out == 3
                         else (Y3 % 2, "bce"))
    model.fit(X3, first, loss=first_loss, optimizer=optimizer, epochs=1, verbose=0, seed=0)
    before = (model.params.copy(), model.grads.copy(), model.classes.copy(),
              {k: v.copy() for k, v in optimizer.state.items()}, optimizer.steps)
    fit_loss = model.fit_loss
    with pytest.raises(error, match=match):
        model.fit(X3, y, loss=loss, optimizer=optimizer, epochs=1, verbose=0, **options)
    assert model.params.tobytes() == before[0].tobytes()
    assert model.grads.tobytes() == before[1].tobytes()
    np.testing.assert_array_equal(model.classes, before[2])
    assert {k: v.tobytes() for k, v in optimizer.state.items()} == \
        {k: v.tobytes() for k, v in before[3].items()}
    assert optimizer.steps == before[4] and model.fit_loss is fit_loss


def test_evaluate_refuses_labels_outside_the_classes():
    labels = np.array(["a", "b", "c"])[Y3]
    model, _ = train(labels, X3, 3, "cross_entropy", epochs=1)
    with pytest.raises(ValueError, match=r"y holds the labels \[0, 1, 2\]"):
        model.evaluate(X3, Y3)


def test_predict_labels_of_a_multi_label_bce_model_is_a_zero_one_matrix():
    targets = np.stack([Y3 == 0, Y3 == 2], axis=1).astype(float)      # two yes/no columns
    model, _ = train(targets, X3, 2, "bce", epochs=1)
    assert model.classes is None
    np.testing.assert_array_equal(model.predict_labels(X3),
                                  (model.predict(X3) > 0).astype(int))


def test_one_output_under_cross_entropy_has_one_class():
    model, _ = train(np.zeros(len(X3), dtype=int), X3, 1, "cross_entropy", epochs=1)
    np.testing.assert_array_equal(model.classes, [0])
    assert np.any(model.predict(X3) > 0)     # a sign would say 1; there is one class
    np.testing.assert_array_equal(model.predict_labels(X3), np.zeros(len(X3)))
