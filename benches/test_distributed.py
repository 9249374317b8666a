"""benches/distributed.py runs end to end under mpiexec, and its parts do what it says.

No test here asserts a timing. The subprocess run checks that the script's own
correctness gate passes on two ranks (every rank's distributed steps against plain
steps on all ranks' rows together, and the ranks' parameters equal bit for bit), and
that both tables list every workload with the parameter count and gradient bytes
worked out here from the layer sizes. The in-process tests use a one-rank
communicator (``MPI.COMM_SELF``): the gate passes there and fails when the reduction
is made wrong, and the timing helpers follow the block sizes they are given.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from . import compare, distributed
from .workloads import W1, W2_MOMENTUM

ROOT = Path(__file__).resolve().parent.parent
#: the first table's rows, in order
LABELS = ["W1", "W2 momentum", "W2 Adam", "Allreduce 1M float64"]


def _cells(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _params(sizes):
    """A dense network's weights and biases, counted by hand: in x out + out per layer."""
    return sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))


def test_distributed_script_runs_on_two_ranks_and_its_check_passes():
    pytest.importorskip("mpi4py")
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.is_file():
        pytest.skip(f"no mpiexec beside the interpreter ({mpiexec.parent})")
    result = subprocess.run(
        [str(mpiexec), "-n", "2", sys.executable, "-m", "mpi4py",
         str(ROOT / "benches" / "distributed.py"), "--quick"],
        cwd=ROOT, env=dict(os.environ), stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "CHECK FAILED" not in out
    assert "ranks: 2" in out
    lines = out.splitlines()
    first = lines.index(next(line for line in lines if line.startswith("| workload | params")))
    header = _cells(lines[first])
    assert header[3:14] == ["(a) fused step µs", "(b) distributed step µs",
                           "(c) Allreduce µs", "(b)−(a) µs", "(b)/(a)",
                           "(d) COMM_SELF step µs", "(e) fused step + Barrier µs",
                           "(e)−(a) µs", "(f) fused step + Allreduce µs", "(f)−(a) µs",
                           "(b)−(f) µs"]
    rows = {}
    for line in lines[first + 2:]:
        if not line.startswith("|"):
            break
        cells = _cells(line)
        rows[cells[0]] = cells
    assert list(rows) == LABELS, out
    w2 = _params(W2_MOMENTUM.sizes)
    expected = {"W1": (_params(W1.sizes), 8), "W2 momentum": (w2, 4), "W2 Adam": (w2, 4),
                "Allreduce 1M float64": (1_000_000, 8)}
    for label, (count, itemsize) in expected.items():
        assert rows[label][1:3] == [f"{count:,}", f"{count * itemsize:,}"], rows[label]
        assert rows[label][5] != "-"                     # (c) timed on every row
    for label in LABELS[:3]:
        assert "-" not in (rows[label][3], rows[label][4], *rows[label][8:14]), rows[label]
    # the second table: a row of every workload for each of the two ranks
    per_rank = [(_cells(line)[0], _cells(line)[1]) for line in lines
                if line.startswith("| ") and len(_cells(line)) == 13
                and _cells(line)[1] in ("0", "1")]
    assert per_rank == [(label, r) for label in LABELS for r in ("0", "1")], out


def test_the_check_passes_on_one_rank_and_fails_with_a_wrong_reduction(monkeypatch):
    MPI = pytest.importorskip("mpi4py.MPI")
    assert distributed.check_all_ranks(W1, MPI.COMM_SELF) == []
    from bpcore.distributed import DistributedOptimizer
    synchronize = DistributedOptimizer.synchronize

    def halving(self, weight=None):      # "averaged" as if over two ranks: half the step
        synchronize(self, weight)
        self.model.grads *= 0.5

    monkeypatch.setattr(DistributedOptimizer, "synchronize", halving)
    failed = distributed.check_all_ranks(W1, MPI.COMM_SELF)
    assert [r for r, _ in failed] == [0]
    assert "layers" in failed[0][1] or "loss" in failed[0][1], failed


def test_allreduce_peer_reduces_its_buffer_in_place_over_the_communicator():
    MPI = pytest.importorskip("mpi4py.MPI")
    peer = distributed.AllreducePeer(5, np.float32, MPI.COMM_SELF)
    assert peer.buffer.dtype == np.float32 and peer.buffer.shape == (5,)
    peer.buffer[:] = np.arange(5)
    peer.run()                  # one rank: the sum over the ranks is the buffer itself
    np.testing.assert_array_equal(peer.buffer, np.arange(5, dtype=np.float32))


class CountingPeer(compare.Peer):
    def __init__(self):
        self.runs, self.restores = 0, 0

    def run(self):
        self.runs += 1

    def restore(self):
        self.restores += 1


def test_interleaved_samples_takes_the_given_block_sizes_without_calibrating():
    peers = {"a": CountingPeer(), "b": CountingPeer()}
    samples = compare.interleaved_samples(peers, rounds=3, block_sizes={"a": 2, "b": 5})
    assert {name: len(values) for name, values in samples.items()} == {"a": 3, "b": 3}
    # 3 rounds of one block each, no calibration block: 3 x 2 and 3 x 5 steps
    assert (peers["a"].runs, peers["b"].runs) == (6, 15)
    assert (peers["a"].restores, peers["b"].restores) == (3, 3)


def test_agreed_block_sizes_are_within_the_limits_and_every_peer_is_restored_first():
    MPI = pytest.importorskip("mpi4py.MPI")
    peers = {"a": CountingPeer(), "b": CountingPeer()}
    sizes = distributed.agreed_block_sizes(peers, MPI.COMM_SELF, steps=4)
    assert set(sizes) == {"a", "b"}
    assert all(compare.BLOCK_STEPS[0] <= n <= compare.BLOCK_STEPS[1] for n in sizes.values())
    assert all(isinstance(n, int) for n in sizes.values())
    assert [(p.restores, p.runs) for p in peers.values()] == [(1, 5), (1, 5)]


def test_summary_pairs_each_rounds_blocks():
    # worked by hand: differences 1, 3, 1 (median 1); ratios 2, 2.5, 4/3 (median 2,
    # inclusive quartiles 5/3 and 2.25)
    figures = distributed.summary({"a": [1.0, 2.0, 3.0], "b": [2.0, 5.0, 4.0],
                                   "c": [7.0, 9.0, 8.0]})
    assert figures["a"] == 2.0 and figures["b"] == 4.0 and figures["c"] == 8.0
    assert figures["b-a"] == 1.0
    np.testing.assert_allclose(figures["b/a"], (2.0, 5 / 3, 2.25))
    assert distributed.summary({"c": [3.0, 1.0]}) == {"c": 2.0}
