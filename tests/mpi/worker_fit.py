"""fit with a DistributedOptimizer: uneven shards against one process on the union of
each step's batches; validation and metrics averaged; early stopping, the divergence
guard and bad input decided alike on every rank; rank 0 alone writes checkpoints."""
import sys
from pathlib import Path

import numpy as np
from _common import RANK, close, done, model, same_on_every_rank

import bpcore as bp
from bpcore import distributed as dist

folder = Path(sys.argv[1])
rng = np.random.default_rng(21)
X = rng.normal(size=(60, 3))
y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)              # classes 0, 1, 2
Xv, yv = rng.normal(size=(25, 3)), rng.integers(0, 3, 25)
rows = slice(0, 37) if RANK == 0 else slice(37, 60)            # uneven shards
val_rows = slice(0, 15) if RANK == 0 else slice(15, 25)
BATCH, EPOCHS = 8, 4
loss = bp.CrossEntropyLoss()

# ---- uneven shards, no shuffling: each step is one process's step on the union of
# the ranks' batches (rank 1's rows run out first: it takes its last steps empty)
net = model(seed=30 + RANK)
opt = dist.DistributedOptimizer(bp.SGD(net, lr=0.1, momentum=0.9))
history = net.fit(X[rows], y[rows], loss=loss, optimizer=opt, epochs=EPOCHS,
                  batch_size=BATCH, shuffle=False, verbose=0, metrics=["accuracy"],
                  validation_data=(Xv[val_rows], yv[val_rows]),
                  callbacks=[bp.ModelCheckpoint(folder / f"every-epoch-rank{RANK}.bpc",
                                                save_best_only=False)])
reference = model(seed=30)
ref_opt = bp.SGD(reference, lr=0.1, momentum=0.9)
shards = [(X[:37], y[:37]), (X[37:], y[37:])]
steps = max(-(-len(s[0]) // BATCH) for s in shards)
expected = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
for _epoch in range(EPOCHS):
    total = 0.0
    for step in range(steps):
        part = slice(step * BATCH, (step + 1) * BATCH)
        Xb = np.concatenate([s[0][part] for s in shards])
        yb = np.concatenate([s[1][part] for s in shards])
        value, _ = reference.loss_and_grad(Xb, yb, loss)
        ref_opt.step()
        total += value * len(Xb)
    expected["loss"].append(total / len(X))
    for prefix, (Xs, ys) in (("", (X, y)), ("val_", (Xv, yv))):
        scores = reference.evaluate(Xs, ys, loss=loss, metrics=["accuracy"])
        if prefix:
            expected["val_loss"].append(scores["loss"])
        expected[prefix + "accuracy"].append(scores["accuracy"])
assert close(net.params, reference.params), np.abs(net.params - reference.params).max()
assert same_on_every_rank(net.params)
for key, values in expected.items():
    assert close(history[key], values), (key, history[key], values)
assert (folder / "every-epoch-rank0.bpc").exists()
assert not (folder / "every-epoch-rank1.bpc").exists()

# ---- the same against one process for reduction="sum", sample weights and L2 (the
# L2 term, l2/2 * sum(W**2) on weight matrices, added once per step, not per rank)
weights = rng.uniform(0.2, 3.0, size=60)
weights[37 + 9] = 0.0                           # a zero weight on rank 1
L2 = 0.01
for reduction in ("sum", "mean"):
    summing = bp.CrossEntropyLoss(reduction=reduction)
    net = model(seed=70 + RANK, dtype=np.float64)
    opt = dist.DistributedOptimizer(bp.SGD(net, lr=0.01, momentum=0.5))
    history = net.fit(X[rows], y[rows], loss=summing, optimizer=opt, epochs=2,
                      batch_size=BATCH, shuffle=False, verbose=0, l2=L2,
                      sample_weight=weights[rows],
                      validation_data=(Xv[val_rows], yv[val_rows]))
    reference = model(seed=70)
    ref_opt = bp.SGD(reference, lr=0.01, momentum=0.5)
    parts = [(X[:37], y[:37], weights[:37]), (X[37:], y[37:], weights[37:])]
    losses, val_losses = [], []
    for _epoch in range(2):
        total = mass = 0.0
        for step in range(steps):
            part = slice(step * BATCH, (step + 1) * BATCH)
            Xb, yb, wb = (np.concatenate([p[i][part] for p in parts]) for i in range(3))
            value, _ = reference.loss_and_grad(Xb, yb, summing, sample_weight=wb)
            for layer in reference.layers:               # the L2 term by hand
                value += L2 / 2 * float(np.sum(layer.W ** 2))
                layer.dW += L2 * layer.W
            ref_opt.step()
            total += value * wb.sum()
            mass += wb.sum()
        losses.append(total / mass)
        val_losses.append(reference.evaluate(Xv, yv, loss=summing)["loss"])
    assert close(net.params, reference.params), (reduction, np.abs(
        net.params - reference.params).max())
    assert same_on_every_rank(net.params)
    assert close(history["loss"], losses), (reduction, history["loss"], losses)
    assert close(history["val_loss"], val_losses), (reduction, history["val_loss"])

# ---- shuffled, uneven, early stopping on the averaged validation loss: every rank
# stops at the same epoch on the same (restored) weights
net = model(seed=40 + RANK)
opt = dist.DistributedOptimizer(bp.Adam(net, lr=0.05))
stop = bp.EarlyStopping(patience=2, restore_best_weights=True)
history = net.fit(X[rows], y[rows], loss=loss, optimizer=opt, epochs=60, batch_size=BATCH,
                  seed=5, verbose=0, validation_data=(Xv[val_rows], yv[val_rows]),
                  callbacks=[stop])
assert len(history.epoch) < 60, "early stopping never stopped"
assert same_on_every_rank(net.params)
assert same_on_every_rank(np.array(history["val_loss"]))
assert same_on_every_rank(np.array([len(history.epoch)]))
assert close(net.evaluate(Xv, yv, loss=loss)["loss"], stop.best)

# ---- a shard that lacks a class: the classes come from every rank
labels = np.array(["cat", "dog", "eel"])[y]
mine = labels[rows][labels[rows] != "eel"] if RANK == 1 else labels[rows]
Xmine = X[rows][labels[rows] != "eel"] if RANK == 1 else X[rows]
net = model(seed=1)
net.fit(Xmine, mine, loss=loss, optimizer=dist.DistributedOptimizer(bp.Adam(net)),
        epochs=1, verbose=0)
assert net.classes.tolist() == ["cat", "dog", "eel"]

# ---- the divergence guard decides alike: a target that overflows the loss on rank 1
# only (its third batch) is skipped on both ranks
values = np.where(np.arange(60)[:, None] == 37 + 2 * BATCH, 1e300, X @ np.ones((3, 3)))
net = model(seed=50)
opt = dist.DistributedOptimizer(bp.SGD(net, lr=0.01))
history = net.fit(X[rows], values[rows], loss="mse", optimizer=opt, epochs=1,
                  batch_size=BATCH, shuffle=False, verbose=0, on_nonfinite="skip")
assert history["skipped_steps"] == [1.0], history.history
assert opt.steps == steps - 1
assert same_on_every_rank(net.params) and np.isfinite(net.params).all()
before = net.params.copy()
try:
    net.fit(X[rows], values[rows], loss="mse", optimizer=opt, epochs=1, batch_size=BATCH,
            shuffle=False, verbose=0)
    raise AssertionError("a non-finite loss on rank 1 did not raise on rank 0")
except bp.TrainingDiverged:
    pass
assert same_on_every_rank(net.params) and np.isfinite(net.params).all()

# ---- bad input on one rank stops every rank, nothing changed; so do settings that
# differ between the ranks
net = model(seed=60)
opt = dist.DistributedOptimizer(bp.Adam(net))
before, steps_before = net.params.copy(), opt.steps
bad = X[rows].copy()
if RANK == 1:
    bad[3, 1] = np.nan
for kwargs, message in (({"X": bad}, "rank 1"), ({"batch_size": 8 + RANK}, "batch_size")):
    arguments = {"X": X[rows], "batch_size": 8, **kwargs}
    try:
        net.fit(arguments["X"], y[rows], loss=loss, optimizer=opt, epochs=1,
                batch_size=arguments["batch_size"], verbose=0)
        raise AssertionError(f"fit accepted {kwargs}")
    except ValueError as error:
        assert message in str(error) or RANK == 1, error
    assert np.array_equal(net.params, before) and opt.steps == steps_before and not opt.state
# ---- a refusal on one rank, wherever fit checks it, raises on every rank (and does
# not leave the other waiting); nothing changes
CASES = {
    "verbose": {"verbose": 5},
    "epochs": {"epochs": 0},
    "initial_epoch": {"initial_epoch": 1},
    "loss": {"loss": "cross_entropi"},
    "classes": {"classes": [0, 1, 2]},
    "seed": {"seed": None},
    "callbacks": {"callbacks": [bp.EarlyStopping(monitor="loss")]},
    "empty shard": {"X": X[:0], "y": y[:0]},
    "sample_weight": {"sample_weight": np.ones(37 if RANK == 0 else 23)},
}
for case, change in CASES.items():
    net = model(seed=80)
    opt = dist.DistributedOptimizer(bp.Adam(net))
    before = net.params.copy()
    arguments = {"X": X[rows], "y": y[rows], "loss": "cross_entropy", "epochs": 2,
                 "seed": 3, "verbose": 0, **(change if RANK == 1 else {})}
    try:
        net.fit(arguments.pop("X"), arguments.pop("y"), optimizer=opt, **arguments)
        raise AssertionError(f"{case} on rank 1 only was accepted")
    except (ValueError, TypeError):
        pass
    assert np.array_equal(net.params, before) and opt.steps == 0 and not opt.state, case
    assert net.classes is None and net.epochs_trained == 0, case

# a callable loss is the same setting on every rank (not refused for its address)
net = model(seed=81)


def squared(output, target):
    return float(np.mean((output - target) ** 2)), 2 * (output - target) / output.size


net.fit(X[rows], X[rows] @ np.ones((3, 3)), loss=squared,
        optimizer=dist.DistributedOptimizer(bp.SGD(net, lr=0.01)), epochs=1, verbose=0)
assert same_on_every_rank(net.params)

# partial_fit where only rank 0's model kept classes: refused on both ranks
net = model(seed=82)
opt = dist.DistributedOptimizer(bp.Adam(net))
if RANK == 0:
    net.classes = np.array([0, 1, 2])
try:
    net.partial_fit(X[rows], y[rows], loss="cross_entropy", optimizer=opt)
    raise AssertionError("partial_fit with different kept classes was accepted")
except ValueError as error:
    assert "classes" in str(error), error

# a metric that fails on one rank's data, at the epoch's end: raised on both ranks


def picky(y_true, y_pred):
    if RANK == 1:
        raise ValueError("this metric refuses rank 1's shard")
    return 0.0


net = model(seed=83)
try:
    net.fit(X[rows], y[rows], loss="cross_entropy", metrics=[picky], epochs=2, verbose=0,
            optimizer=dist.DistributedOptimizer(bp.Adam(net)))
    raise AssertionError("a failing metric on rank 1 went unnoticed on rank 0")
except ValueError as error:
    assert "rank 1" in str(error), error

# dropout: each rank draws its own masks (identical data on both ranks, yet each
# rank's batch losses differ, as two halves of one process's batch would)
net = bp.Model([bp.Dense(3, 32, "relu", dropout=0.5), bp.Dense(32, 3)], seed=84)
seen = []
net.fit(X[:16], y[:16], loss="cross_entropy", epochs=1, batch_size=16, shuffle=False,
        verbose=0, optimizer=dist.DistributedOptimizer(bp.SGD(net, lr=0.0)),
        callbacks=[bp.LambdaCallback(on_batch_end=lambda batch, logs: seen.append(
            logs["loss"]))])
assert not same_on_every_rank(np.array(seen)), seen
done()
