"""The cost of the gradient reduction in data-parallel training (bpcore.distributed), per MPI rank.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \\
        mpiexec -n 2 python -m mpi4py benches/distributed.py [--quick] [--rounds N] [--threads 1]

(unset the two OPENBLAS_ variables in benchmark commands only: benches/README.md;
``-m mpi4py`` makes an error on one rank abort every rank instead of leaving the others
waiting in a collective.) Any number of ranks from 1 works; the header names it.

Every rank holds the whole model, built from seed 0 as in benches/workloads.py, and a
batch of its own of the workload's size (``Workload.data(seed=rank)``): the global
batch of one step is ranks x batch, as in data-parallel training. On each rank, per
step:

  (a) fused      ``model.train_step(X, y, loss, optimizer)``: one process's step on the
                 rank's batch, the update inside the kernel
  (b) distributed ``model.train_step(X, y, loss, DistributedOptimizer(optimizer))``:
                 the kernel's forward and backward, one in-place ``Allreduce`` of
                 ``model.grads`` over the ranks and its scaling by 1/size, then the
                 optimizer's own ``step()``
  (c) Allreduce  ``comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)`` on a zeroed buffer
                 of ``model.grads``' dtype and size: the reduction alone
  (d) COMM_SELF  (b) over ``MPI.COMM_SELF``: the same path with a one-rank reduction.
                 (b) - (d) is what reducing with the other ranks adds; (d) - (a) is
                 what taking the update out of the kernel costs (the reduction must
                 sit between the backward pass and the update)
  (e) meeting    (a) followed by ``comm.Barrier()``: the fused step, the ranks meeting
                 once per step and nothing reduced. (e) - (a) is what any synchronous
                 data-parallel step pays on this machine before it moves a byte: the
                 wait for the slowest rank's step (the ranks' steps vary in time, and
                 each step waits for the slowest) plus a barrier's latency
  (f) step + Allreduce  (a) followed by (c)'s ``Allreduce`` of a zeroed buffer of the
                 gradient's size: the fused step and the reduction each as they are
                 alone, in the order of a distributed step. (f) - (a) is the
                 reduction's cost where it runs in training, once per step after the
                 step's own work, rather than back to back as in (c); (b) - (f) is what
                 the distributed step adds to both (the update outside the kernel,
                 the optimizer's Python call)

plus a row of (c) alone on 1M float64 (8 MB) for scale. Workloads (benches/README.md):
W1 (2-16-16-1, float64, batch 100, SGD), W2 with SGD momentum 0.9 and with Adam
(784-256-128-10, float32, batch 128).

Check: before a workload is timed, CHECK_STEPS distributed steps from the same start
must equal, on every rank, as many plain steps on the batch of every rank's rows
together (with batches of one size, the mean of the ranks' mean gradients is the
whole batch's mean gradient), and the mean over the ranks of the distributed step's
losses must equal that step's loss: ``compare.check`` after the first and the last
step (float64 element-wise to 1e-10; float32 by ``assert_close_float32``, plus its
float64 twin to 1e-10). Every rank's parameters must then equal rank 0's bit for bit.
A failure prints CHECK FAILED, leaves the row out and makes the exit status 1.

Timing: ``compare.interleaved_samples``, the peers in turn (a) (b) (c) (d), round after
round; before every block each peer's parameters and optimizer state are restored
(untimed) and the ranks meet in an ``MPI_Barrier``, so that every rank's block starts
together and (a) runs on every rank at once, as (b) does. Block sizes (about
``compare.BLOCK_SECONDS`` of steps) are timed on every rank and the slowest rank's
taken, so that every rank runs the same number of collective calls. There is no
time-based warm-up (it would run a different number of steps on each rank): BLAS
threads are pinned to ``--threads`` per rank (default 1) with threadpoolctl. A figure
is the median over rounds of the block's time per step; (b)-(a) is the median of each
round's difference and (b)/(a) of each round's ratio (``compare.paired_ratio``), each
on its rank. The first table shows the slowest rank's figure of each column, the
second every rank's.
"""
import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):              # run as a script: make `benches` importable
    sys.path.insert(0, str(HERE.parent))

import bpcore as bp  # noqa: E402
from benches import compare, compare_sklearn  # noqa: E402
from benches.workloads import W1, W2_ADAM, W2_MOMENTUM  # noqa: E402
from bpcore import distributed as dist  # noqa: E402

CHECK_STEPS = 3
CALIBRATION_STEPS = 20
SCALE_ELEMENTS = 1_000_000          # the Allreduce-only row: 1M float64
ROWS = (("W1", W1), ("W2 momentum", W2_MOMENTUM), ("W2 Adam", W2_ADAM))
COLUMNS = ("a", "b", "c", "d", "e", "f")


def _mpi():
    from mpi4py import MPI
    return MPI


def _loss(workload):
    return bp.MSELoss() if workload.loss == "mse" else bp.CrossEntropyLoss()


# ---------------------------------------------------------------------------- peers
class DistributedPeer(compare.BpcorePeer):
    """``model.train_step`` with the workload's optimizer wrapped in a
    ``DistributedOptimizer`` over ``comm``; ``mean_loss``: ``run()`` returns the mean
    over the ranks of the step's loss (for the check, one more collective), else this
    rank's loss."""

    def __init__(self, workload, X, y, comm, mean_loss=False):
        super().__init__(workload, X, y)
        dist.broadcast_parameters(self.model, comm=comm)
        self.distributed = dist.DistributedOptimizer(self.optimizer, comm=comm)
        train_step, loss, optimizer = self.model.train_step, _loss(workload), self.distributed
        if mean_loss:
            self.run = lambda: dist.allreduce(train_step(X, y, loss, optimizer), "mean", comm)
        else:
            self.run = lambda: train_step(X, y, loss, optimizer)


class AllreducePeer(compare.Peer):
    """The reduction alone: ``comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)`` on
    ``size`` zeros of ``dtype`` (zeros: the sums stay zero, however many steps)."""

    def __init__(self, size, dtype, comm):
        MPI = _mpi()
        self.buffer = buffer = np.zeros(size, dtype)
        allreduce, in_place, op = comm.Allreduce, MPI.IN_PLACE, MPI.SUM
        self.run = lambda: allreduce(in_place, buffer, op=op)

    def save(self):
        pass


class StepThenPeer(compare.BpcorePeer):
    """The fused ``train_step`` followed by ``then()``: columns (e) and (f)."""

    def __init__(self, workload, X, y, then):
        super().__init__(workload, X, y)
        step = self.run

        def run():
            value = step()
            then()
            return value

        self.run = run


def synchronised(peer, comm):
    """``peer`` whose ``restore()`` (untimed, before every block) ends in a barrier of
    ``comm``: every rank's block starts together."""
    restore = peer.restore

    def restore_then_meet():
        restore()
        comm.Barrier()

    peer.restore = restore_then_meet
    return peer


def agreed_block_sizes(peers, comm, steps=CALIBRATION_STEPS):
    """{name: steps per block} equal on every rank: about ``compare.BLOCK_SECONDS`` of
    the slowest rank's steps, within ``compare.BLOCK_STEPS``. Collective: every rank
    runs each peer's ``steps`` + 1 steps, then one allreduce per peer."""
    MPI = _mpi()
    sizes = {}
    for name, peer in peers.items():
        peer.restore()
        peer.run()
        start = time.perf_counter()
        for _ in range(steps):
            peer.run()
        per_step = comm.allreduce((time.perf_counter() - start) / steps, op=MPI.MAX)
        sizes[name] = int(np.clip(round(compare.BLOCK_SECONDS / per_step),
                                  *compare.BLOCK_STEPS))
    return sizes


# ------------------------------------------------------------------------ checks
def check_workload(workload, comm, steps=CHECK_STEPS):
    """{name: reason} of what failed (empty: passed) of ``workload``'s check on this
    rank (module docstring). Collective: every rank calls it with the same workload."""
    X, y = workload.data(seed=comm.Get_rank())
    everyone = comm.allgather((X, y))
    X_all = np.concatenate([part[0] for part in everyone])
    y_all = np.concatenate([part[1] for part in everyone])
    peers = {"bpcore": compare.BpcorePeer(workload, X_all, y_all),
             "distributed": DistributedPeer(workload, X, y, comm, mean_loss=True)}
    failed = compare.check(peers, workload, steps)
    params = peers["distributed"].model.params
    root = params.copy()
    comm.Bcast(root, root=0)
    if not np.array_equal(params, root):
        failed.setdefault("distributed", f"rank {comm.Get_rank()}'s parameters differ from "
                                         f"rank 0's after {steps} steps")
    return failed


def check_all_ranks(workload, comm):
    """The failures of ``workload``'s check (and its float64 twin's, for float32) on
    every rank: [(rank, reason)], the same list on every rank. Collective."""
    failed = check_workload(workload, comm)
    if np.dtype(workload.dtype) == np.float32:
        twin = workload.with_dtype(np.float64)
        for name, reason in check_workload(twin, comm).items():
            failed.setdefault(name, f"float64 twin: {reason}")
    return [(r, reason) for r, mine in enumerate(comm.allgather(failed))
            for reason in mine.values()]


# ------------------------------------------------------------------------ timing
def measure(peers, comm, rounds):
    """This rank's {name: [µs per step of each round's block]} of ``peers``, timed
    interleaved with block sizes that every rank shares. Collective."""
    for peer in peers.values():
        synchronised(peer, comm)
    sizes = agreed_block_sizes(peers, comm)
    return compare.interleaved_samples(peers, rounds, threads=1, block_sizes=sizes)


def summary(samples):
    """This rank's figures from its samples: {column: median µs}, plus "b-a" (median
    of each round's difference) and "b/a" ((median, low, high) quartiles of each
    round's ratio) where both were timed."""
    figures = {name: statistics.median(values) for name, values in samples.items()}
    if "a" in samples and "b" in samples:
        figures["b-a"] = statistics.median(b - a for a, b in zip(samples["a"], samples["b"]))
        figures["b/a"] = compare.paired_ratio(samples["b"], samples["a"])
    for key in ("e", "f"):
        if "a" in samples and key in samples:
            figures[f"{key}-a"] = statistics.median(
                x - a for a, x in zip(samples["a"], samples[key]))
    if "b" in samples and "f" in samples:
        figures["b-f"] = statistics.median(b - f for f, b in zip(samples["f"], samples["b"]))
    return figures


def workload_peers(workload, comm):
    """{column: peer} of a workload's six measurements on this rank, each stepped a
    few times (its workspace built, Adam's buffers created) and saved. Collective."""
    MPI = _mpi()
    X, y = workload.data(seed=comm.Get_rank())
    fused = compare.BpcorePeer(workload, X, y)
    peers = {"a": fused,
             "b": DistributedPeer(workload, X, y, comm),
             "c": AllreducePeer(fused.model.grads.size, fused.model.dtype, comm),
             "d": DistributedPeer(workload, X, y, MPI.COMM_SELF),
             "e": StepThenPeer(workload, X, y, comm.Barrier),
             "f": StepThenPeer(workload, X, y,
                               AllreducePeer(fused.model.grads.size, fused.model.dtype,
                                             comm).run)}
    for peer in peers.values():
        for _ in range(3):
            peer.run()
        peer.save()
    return peers


# ------------------------------------------------------------------------ report
def header_lines(comm, threads, pinned):
    """The machine, the libraries and the threads of the run (every rank's BLAS
    threads). Collective."""
    MPI = _mpi()
    import mpi4py
    blas = bp.threads.blas_threads() if pinned else None
    ranks_blas = comm.gather(blas, root=0)
    if comm.Get_rank() != 0:
        return []
    # the library's first line (name and version) and, for MPICH, its device line
    described = [line for line in MPI.Get_library_version().strip().splitlines()
                 if line.strip()]
    library = " ".join(described[0].split()) + "".join(
        f", {' '.join(line.split())}" for line in described[1:]
        if line.startswith("MPICH Device"))
    lines = [f"date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
             *compare_sklearn.machine_lines(),
             f"system: {platform.system()} {platform.release()}, Python "
             f"{platform.python_version()}",
             f"versions: bpcore {bp.__version__}, numpy {np.__version__}, mpi4py "
             f"{mpi4py.__version__}, {library}",
             f"ranks: {comm.Get_size()} (MPI processes on one machine)"]
    if pinned:
        lines.append(f"BLAS threads per rank: {threads} requested (threadpoolctl); "
                     f"largest BLAS thread count on each rank: {ranks_blas}")
    else:
        lines.append("BLAS threads: threadpoolctl not installed, NOT pinned "
                     "(set OPENBLAS_NUM_THREADS)")
    environment = [f"{v}={os.environ[v]}" for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                    "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
                   if v in os.environ]
    lines.append("environment: " + (", ".join(environment) or
                                    "no OPENBLAS_/OMP_ thread or kernel variables set"))
    lines += ["rank 0's " + line for line in compare_sklearn.blas_lines()]
    lines.append(load_line("at the start"))
    return lines


def load_line(when):
    """The machine's load averages ``when`` (a shared machine's other work shows here)."""
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return f"load average {when}: not available"
    return f"load average {when}: {one:.2f} (1 min), {five:.2f} (5 min), {fifteen:.2f} (15 min)"


def cell(figures, key):
    """The slowest rank's figure of ``key`` (µs, or a ratio), or '-' where not timed."""
    values = [f[key] for f in figures if key in f]
    if not values:
        return "-"
    if key == "b/a":
        return f"{max(v[0] for v in values):.2f}"
    return compare.fmt_us(max(values))


def print_tables(results):
    """The two Markdown tables of ``results``: [(label, params, bytes, [figures of
    each rank])]."""
    print("| workload | params | bytes | (a) fused step µs | (b) distributed step µs "
          "| (c) Allreduce µs | (b)−(a) µs | (b)/(a) | (d) COMM_SELF step µs "
          "| (e) fused step + Barrier µs | (e)−(a) µs | (f) fused step + Allreduce µs "
          "| (f)−(a) µs | (b)−(f) µs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, params, nbytes, figures in results:
        cells = [label, f"{params:,}", f"{nbytes:,}"] + \
            [cell(figures, key) for key in ("a", "b", "c", "b-a", "b/a", "d", "e", "e-a",
                                            "f", "f-a", "b-f")]
        print("| " + " | ".join(cells) + " |")
    print()
    print("Every rank:")
    print()
    print("| workload | rank | (a) µs | (b) µs | (c) µs | (d) µs | (e) µs | (f) µs "
          "| (b)−(a) µs | (b)/(a) (quartiles) | (e)−(a) µs | (f)−(a) µs | (b)−(f) µs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, _params, _nbytes, figures in results:
        for r, f in enumerate(figures):
            cells = [label, str(r)] + [compare.fmt_us(f.get(key)) for key in COLUMNS]
            cells.append(compare.fmt_us(f.get("b-a")))
            if "b/a" in f:
                ratio, low, high = f["b/a"]
                cells.append(f"{ratio:.2f} ({low:.2f}–{high:.2f})")
            else:
                cells.append("-")
            cells += [compare.fmt_us(f.get(key)) for key in ("e-a", "f-a", "b-f")]
            print("| " + " | ".join(cells) + " |")


# -------------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds per workload (default 30; --quick 3)")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads per rank, set with threadpoolctl (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3 rounds")
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds must be at least 1; got {args.rounds}")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1; got {args.threads}")
    rounds = args.rounds or (3 if args.quick else 30)

    MPI = _mpi()
    comm = MPI.COMM_WORLD
    rank = dist.rank(comm)
    try:
        import scipy.linalg.blas  # noqa: F401  (bpcore's BLAS, loaded for pinning)
        import threadpoolctl
        limits = threadpoolctl.threadpool_limits(limits=args.threads, user_api="blas")
    except ImportError:
        limits = None

    def say(*lines):
        if rank == 0:
            for line in lines:
                print(line, flush=True)

    say(*header_lines(comm, args.threads, limits is not None))
    say("")
    results, failures = [], 0
    for label, workload in ROWS:
        started = time.perf_counter()
        failed = check_all_ranks(workload, comm)
        if failed:
            failures += 1
            say(*[f"CHECK FAILED [{label}] rank {r}: " + " ".join(reason.split())[:600]
                  for r, reason in failed])
            continue
        peers = workload_peers(workload, comm)
        model = peers["a"].model
        figures = summary(measure(peers, comm, rounds))
        results.append((label, model.n_params, model.grads.nbytes, comm.gather(figures)))
        say(f"[{label}] checked, {rounds} rounds, {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    scale = {"c": AllreducePeer(SCALE_ELEMENTS, np.float64, comm)}
    figures = summary(measure(scale, comm, rounds))
    results.append(("Allreduce 1M float64", SCALE_ELEMENTS, SCALE_ELEMENTS * 8,
                    comm.gather(figures)))
    say(f"[Allreduce 1M float64] {rounds} rounds, {time.perf_counter() - started:.0f} s", "")

    if rank == 0:
        print_tables(results)
        print()
        print(f"{dist.size(comm)} ranks, {args.threads} BLAS thread(s) per rank, {rounds} "
              "rounds. µs: median over interleaved rounds of the block's time per step; "
              "(b)−(a) and (b)/(a): medians of each round's difference and ratio on the "
              "rank. First table: the slowest rank's figure in each column. (a) one "
              "process's fused step on the rank's batch; (b) the distributed step; (c) the "
              "bare in-place Allreduce of a buffer of the gradient's size; (d) (b) over "
              "MPI.COMM_SELF (no other rank); (e) (a) then MPI_Barrier (the ranks meet "
              "once per step, nothing reduced); (f) (a) then (c)'s Allreduce; '-' not "
              "timed.")
        print(load_line("at the end"))
    if limits is not None:
        limits.restore_original_limits()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
