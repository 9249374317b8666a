"""rank, size, shard, allreduce, allgather, the broadcasts, synchronize with clipping,
schedules and state_dict through a DistributedOptimizer, one Allreduce per step, and
the 1/size that train_step folds into its kernel."""
import numpy as np
from _common import RANK, SIZE, close, done, model, same_on_every_rank
from mpi4py import MPI

import bpcore as bp
from bpcore import _engine
from bpcore import distributed as dist
from bpcore.nn.model import Model

# ---- rank, size, shard: np.array_split's pieces, in rank order
assert (dist.rank(), dist.size()) == (MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size())
for n in (0, 1, 2, 7, 10, 1001):
    piece = np.arange(n)[dist.shard(n)]
    assert np.array_equal(piece, np.array_split(np.arange(n), SIZE)[RANK]), n
    pieces = dist.allgather(piece)
    assert np.array_equal(np.concatenate(pieces), np.arange(n)), n

# ---- allreduce against NumPy over every rank's values
mine = np.array([[1.5, -2.0], [3.0, RANK * 10.0]]) * (RANK + 1)
every = np.stack(dist.allgather(mine))
for op, reference in (("sum", every.sum(0)), ("mean", every.mean(0)),
                      ("min", every.min(0)), ("max", every.max(0))):
    out = dist.allreduce(mine, op=op)
    assert out.shape == mine.shape and np.allclose(out, reference, rtol=0, atol=1e-15), op
assert dist.allreduce(RANK + 1, op="sum") == 3 and dist.allreduce(True, op="mean") == 1.0
assert dist.allreduce(np.int64(RANK), op="max") == 1
try:
    dist.allreduce(mine, op="median")
    raise AssertionError("op='median' was accepted")
except ValueError as error:
    assert "op must be one of" in str(error) and "median" in str(error)

# ---- broadcast_optimizer_state: hyper-parameters, steps and state, even state that
# rank 1's optimizer has not created yet
net = model(seed=3)
opt = bp.Adam(net, lr=0.01 if RANK == 0 else 0.5)
if RANK == 0:
    for _ in range(3):
        net.loss_and_grad(np.ones((4, 3)), np.zeros(4, int), bp.CrossEntropyLoss())
        opt.step()
else:
    assert opt.state == {} and opt.steps == 0
dist.broadcast_parameters(net)
dist.broadcast_optimizer_state(opt)
assert opt.lr == 0.01 and opt.steps == 3 and sorted(opt.state) == ["exp_avg", "exp_avg_sq"]
for key in opt.state:
    assert same_on_every_rank(opt.state[key]) and np.any(opt.state[key] != 0), key

# ---- a mismatch is refused on every rank, nothing changed
other = model(seed=4, n_out=3 if RANK == 0 else 2)
before = other.params.copy()
try:
    dist.broadcast_parameters(other)
    raise AssertionError("different architectures were broadcast")
except ValueError as error:
    assert "differs between ranks" in str(error), error
assert np.array_equal(other.params, before)
mixed = bp.Adam(net) if RANK == 0 else bp.SGD(net)
try:
    dist.broadcast_optimizer_state(mixed)
    raise AssertionError("different optimizer classes were broadcast")
except ValueError as error:
    assert "differ between ranks" in str(error), error

# ---- one Allreduce per step, and train_step keeps the fused forward and backward


class Counting(MPI.Intracomm):
    """COMM_WORLD, counting its Allreduce calls."""
    calls = 0

    def Allreduce(self, *args, **kwargs):
        Counting.calls += 1
        return super().Allreduce(*args, **kwargs)


comm = Counting(MPI.COMM_WORLD)
net = model(seed=5)
opt = dist.DistributedOptimizer(bp.SGD(net, lr=0.1, momentum=0.9), comm=comm)
X, y = np.random.default_rng(RANK).normal(size=(16, 3)), np.arange(16) % 3
two_call = Model.loss_and_grad


def refused(*args, **kwargs):
    raise AssertionError("train_step with a DistributedOptimizer took the two-call path")


Model.loss_and_grad = refused
try:
    for _ in range(5):
        net.train_step(X, y, bp.CrossEntropyLoss(), opt)
finally:
    Model.loss_and_grad = two_call
assert Counting.calls == 5, Counting.calls
assert same_on_every_rank(net.params)

# ---- synchronize, clip the averaged gradient, step: as one process clipping the mean
net, reference = model(seed=6), model(seed=6)
opt = dist.DistributedOptimizer(bp.SGD(net, lr=0.1), comm=comm)
ref_opt = bp.SGD(reference, lr=0.1)
rng = np.random.default_rng(11)
Xall, yall = rng.normal(size=(16, 3)) * 5, rng.integers(0, 3, 16)
calls = Counting.calls
for _ in range(3):
    net.loss_and_grad(Xall[8 * RANK:8 * RANK + 8], yall[8 * RANK:8 * RANK + 8],
                      bp.CrossEntropyLoss())
    opt.synchronize()
    bp.clip_grad_norm(net, 0.05)
    with opt.skip_synchronize():
        opt.step()                       # does not reduce again
    reference.loss_and_grad(Xall, yall, bp.CrossEntropyLoss())
    bp.clip_grad_norm(reference, 0.05)
    ref_opt.step()
assert close(net.params, reference.params), np.abs(net.params - reference.params).max()
assert Counting.calls == calls + 3, Counting.calls - calls

# ---- a synchronize() whose step never came leaves nothing behind: the next step
# reduces its own gradient (the ranks' gradients differ: without the reduction the
# parameters would too)
net.loss_and_grad(Xall[8 * RANK:8 * RANK + 8], yall[8 * RANK:8 * RANK + 8],
                  bp.CrossEntropyLoss())
opt.synchronize()                        # ... and no step
calls = Counting.calls
net.train_step(Xall[8 * RANK:8 * RANK + 8], yall[8 * RANK:8 * RANK + 8],
               bp.CrossEntropyLoss(), opt)
assert Counting.calls == calls + 1 and same_on_every_rank(net.params)

# ---- train_step inside skip_synchronize(): this rank's own gradient and nothing
# reduced, as a plain step on the rank's own rows (the kernel folds the average's
# 1/size only into steps that reduce); after it, the same model's train_step reduces
# and weighs again: one process's step on both ranks' rows
net, reference = model(seed=9), model(seed=9)
opt = dist.DistributedOptimizer(bp.SGD(net, lr=0.1), comm=comm)
ref_opt = bp.SGD(reference, lr=0.1)
mine = slice(8 * RANK, 8 * RANK + 8)
calls = Counting.calls
with opt.skip_synchronize():
    for _ in range(2):
        net.train_step(Xall[mine], yall[mine], bp.CrossEntropyLoss(), opt)
        reference.loss_and_grad(Xall[mine], yall[mine], bp.CrossEntropyLoss())
        ref_opt.step()
assert Counting.calls == calls, Counting.calls - calls
assert close(net.params, reference.params), np.abs(net.params - reference.params).max()
assert not same_on_every_rank(net.params)          # each rank stepped on its own rows
dist.broadcast_parameters(net)
reference.params[:] = net.params
for _ in range(2):
    net.train_step(Xall[mine], yall[mine], bp.CrossEntropyLoss(), opt)
    reference.loss_and_grad(Xall, yall, bp.CrossEntropyLoss())
    ref_opt.step()
assert Counting.calls == calls + 2, Counting.calls - calls
assert close(net.params, reference.params), np.abs(net.params - reference.params).max()
assert same_on_every_rank(net.params) and net._fused.prescaled

# ---- the 1/size folded into the kernel gives the bits of reducing, then scaling: the
# same fused kernel unweighted (Engine.run at factor 1), the Allreduce of its
# gradients, their halving and the plain optimizer's step (2 ranks: a power of two,
# which commutes with every rounding)
for dtype in (np.float64, np.float32):
    for make in (lambda m: bp.SGD(m, lr=0.05, momentum=0.9), lambda m: bp.Adam(m, lr=0.01)):
        folded, unfolded = model(seed=10, dtype=dtype), model(seed=10, dtype=dtype)
        opt, plain = dist.DistributedOptimizer(make(folded)), make(unfolded)
        steps_rng = np.random.default_rng(20 + RANK)
        first = steps_rng.normal(size=(8, 3)).astype(dtype), steps_rng.integers(0, 3, 8)
        unfolded.train_step(*first, bp.CrossEntropyLoss(), bp.RMSprop(unfolded, lr=0.0))
        engine = unfolded._fused.engine
        for _ in range(5):
            Xs, ys = steps_rng.normal(size=(8, 3)).astype(dtype), steps_rng.integers(0, 3, 8)
            value = folded.train_step(Xs, ys, bp.CrossEntropyLoss(), opt)
            assert value == engine.run(Xs, ys, _engine.KEEP_GRADS, 1.0)
            MPI.COMM_WORLD.Allreduce(MPI.IN_PLACE, unfolded.grads, op=MPI.SUM)
            unfolded.grads *= 0.5
            plain.step()
        assert folded._fused.prescaled
        assert np.array_equal(folded.params, unfolded.params), (dtype, type(plain).__name__)

# ---- broadcast_optimizer_state with hyper-parameters that only make sense together
# (rank 1's nesterov needs its momentum; rank 0 has neither): rank 1 takes rank 0's
# whole set, and drops the buffer rank 0 does not have
net = model(seed=8)
sgd = bp.SGD(net, lr=0.1) if RANK == 0 else bp.SGD(net, lr=0.5, momentum=0.9, nesterov=True)
if RANK == 1:
    net.loss_and_grad(Xall, yall, bp.CrossEntropyLoss())
    sgd.step()
    assert "momentum_buffer" in sgd.state
dist.broadcast_optimizer_state(sgd)
assert sgd.hyperparameters == {"lr": 0.1, "momentum": 0.0, "nesterov": False,
                               "weight_decay": 0.0}
assert sgd.steps == 0 and sgd.state == {}

# ---- the same optimizer in every other respect: schedules, hyper-parameters, state_dict
plain = bp.Adam(net, lr=0.1)
wrapped = dist.DistributedOptimizer(plain)
assert isinstance(wrapped, bp.Adam) and wrapped.optimizer is plain
schedule = bp.StepLR(wrapped, step_size=1, gamma=0.5)
schedule.step()
assert plain.lr == wrapped.lr == 0.05
wrapped.betas = (0.8, 0.9)
assert plain.betas == (0.8, 0.9)
net.loss_and_grad(Xall, yall, bp.CrossEntropyLoss())
wrapped.step()
state = wrapped.state_dict()
wrapped.load_state_dict(state)               # into itself, through the wrapper
assert wrapped.steps == 1 and wrapped.lr == 0.05
restored = bp.Adam(model(seed=0))
restored.load_state_dict(state)
assert restored.steps == plain.steps == 1 and restored.lr == 0.05
assert np.array_equal(restored.state["exp_avg"], plain.state["exp_avg"])
done()
