# The fused training step: forward, loss, backward and optimizer update in one call,
# the GIL released throughout; and predict's forward pass without caches.
#
# An Engine runs the StepPlan it is handed (bpcore/nn/plan.py, built by
# bpcore/nn/fused.py for one batch size, one loss and one optimizer) and nothing else:
# it never reads a Model, a loss or an optimizer. It owns nothing: it holds raw
# pointers into the plan's arrays (the model's flat parameter/gradient buffers, the
# workspace of that batch size, the loss's gradient buffer, the optimizer's state)
# and keeps the plan so the pointers stay valid. The optimizer's hyper-parameters and
# step count come from the plan's Scalars, which the optimizer keeps current. Only X
# and the target cross per call. Whether an engine still applies to a call (same loss,
# optimizer, reduction, state buffers; no dropout in training mode) is decided by
# Model.train_step (src/_train_step.pxi, included at the end) before it calls ``run``.
#
# Differences from loss_and_grad + optimizer.step(), each saving a pass over memory:
# gradients are overwritten, not accumulated (no zeroing pass: dW comes from a
# product with beta = 0 and db from an assigning column sum); dL/dX of the input is
# not computed; pre-activations are not kept for inspection. Unless the call keeps the
# gradients (flags KEEP_GRADS or GUARD; otherwise grads is unspecified after a step):
# plain SGD (no momentum,
# no weight decay) updates W inside the weight-gradient product and leaves dW unwritten;
# other SGD at batch sizes up to BP_OUTER_ROWS forms each weight's gradient inside
# its update (one pass over W and its velocity) and leaves dW unwritten too; so does
# SGD with momentum (no weight decay, not Nesterov) with more than one BLAS thread,
# whose products BLAS adds into the momentum buffer (blas_parallel). A one-unit
# identity output under the squared error (unit_output) runs its forward, the loss
# and its backward in one call (unit_mse), which writes that layer's dW whatever
# the optimizer. With more than one BLAS thread, Adam's pass over the flat buffers
# runs on this thread and bpcore's helper thread (_pool.h), entry for entry as on one,
# and so does SGD's one pass.
#
# fit's divergence guard (flag GUARD) runs here, between the backward pass and the
# update, with the gradients kept: the loss must be finite and the sums of magnitudes
# of the gradients, parameters and optimizer state (src/_guard.h) must bound every
# value the update computes below the element type's largest / 16 (guard_status).
# Otherwise nothing is updated (Engine.status says why) and fit runs the batch the
# two-call way, which raises or skips, or undoes an update that did overflow.
#
# `run` returns None when it cannot take its arguments as they are (other dtype or
# layout, wrong shape, NaN/inf, labels out of range): the Python caller then runs the
# full validation, which raises the clear error or converts, and calls again.
#
# Memory safety: an Engine or a Predictor checks its plan when it is built, once
# (check_layers, check_step_plan): every array it will point into has the dtype,
# C-contiguous layout and shape its kernels assume, the weights lie inside the flat
# parameter buffer (the momentum buffer is addressed at their offsets), each state
# buffer has the parameters' length, and nothing a kernel dereferences is absent.
# A plan that fails raises ValueError and no engine exists; one that passes keeps
# every array alive, so the pointers stay valid for the engine's life.
#
# Threads (docs/reliability.md): a model's Busy records the thread training it and
# the predict calls running. A training call (train_step here; forward, backward,
# loss_and_grad, optimizer.step and fit in Python) claims it, with the GIL held,
# before the kernel releases the GIL, and refuses with RuntimeError while another
# thread holds it or predicts; the claim is re-entrant on its own thread. A predict
# call takes a Predictor that no other call is running (a spare over buffers of its
# own when all are taken), so concurrent predicts never share a workspace.
import numpy as np
cimport numpy as cnp
from numpy.lib.array_utils import byte_bounds

from cython cimport floating
from libc.stdint cimport int64_t, intptr_t
from libc.stdlib cimport malloc, free
from libc.float cimport DBL_MAX, FLT_MAX
from libc.math cimport isfinite, sqrt
from cpython.pythread cimport PyThread_get_thread_ident

from _blas cimport blas_axpy, blas_gemm, fused_product, gemm, small_product
from _pool cimport (adam_update_shared, bp_pool_helper_chunks, bp_pool_helper_on_turn,
                   sgd_update_shared)
from _loops cimport (BP_IDENTITY, BP_LEAKY_RELU, BP_OUTER_ROWS, BP_RELU, BP_SCALED_SIGMOID,
                    adam_update, all_finite, bias_activation, bp_abs_sum_f32, bp_abs_sum_f64,
                    delta_and_bias_grad, import_kernels, outer_sgd_update, sgd_update,
                    small_delta_back, small_dense_forward, transpose, unit_mse,
                    unit_mse_fits)
from _loss_kernels cimport (LOSS_MSE, LOSS_CE_LABELS, LOSS_CE_PROBS, LOSS_BCE, LOSS_POISSON,
                            bce_kernel, cross_entropy_labels_kernel,
                            cross_entropy_probs_kernel, mse_kernel, poisson_kernel)

cnp.import_array()
import_kernels()


cdef enum:
    TRANSPOSE_FIRST_WORK = 1000000   # n * n_in * n_out, see transpose_first
    TRANSPOSE_MAX = 4096             # n_in * n_out

cdef enum:
    OPT_NONE = 0      # the caller steps its optimizer itself
    OPT_SGD = 1
    OPT_ADAM = 2

#: The losses and the optimizer updates this engine computes in its kernel, by the
#: name a plan gives them (bpcore/nn/fused.py decides which a call may use).
LOSS_KINDS = {"mse": LOSS_MSE, "cross_entropy_labels": LOSS_CE_LABELS,
              "cross_entropy_probs": LOSS_CE_PROBS, "bce": LOSS_BCE,
              "poisson": LOSS_POISSON}
OPTIMIZER_KINDS = {"sgd": OPT_SGD, "adam": OPT_ADAM}

# What ``Engine.run`` is asked for, besides the step (its ``flags``):
cdef enum:
    KEEP_GRADS_FLAG = 1   # write every gradient, as loss_and_grad does (no folding)
    GUARD_FLAG = 2        # KEEP_GRADS, and take the update only when it is safe
#: flags of ``Engine.run``: KEEP_GRADS makes ``grads`` hold this step's gradients
#: afterwards; GUARD (fit's divergence guard) also keeps them and checks before the
#: update (see ``Engine.status``)
KEEP_GRADS, GUARD = KEEP_GRADS_FLAG, GUARD_FLAG | KEEP_GRADS_FLAG

# What became of the update of the last ``run`` (``Engine.status``):
cdef enum:
    STATUS_TAKEN = 0       # the update was applied
    STATUS_NONFINITE = 1   # GUARD: the loss or a gradient is not finite; no update
    STATUS_UNSAFE = 2      # GUARD: the update might make a value overflow; no update
#: ``Engine.status`` after a run: the update taken, or (GUARD) left out because the
#: loss or a gradient is not finite, or because it might overflow
STEP_TAKEN, STEP_NONFINITE, STEP_UNSAFE = STATUS_TAKEN, STATUS_NONFINITE, STATUS_UNSAFE


cdef struct Layer:
    long n_in, n_out
    int kind
    double slope
    char* W
    char* b
    char* c
    char* dW
    char* db
    char* dc
    char* A
    char* D
    char* G
    char* delta
    char* dX


cdef char* address(object array):
    """The data pointer of an ndarray (None or an empty array: NULL)."""
    if array is None or array.size == 0:
        return NULL
    return <char*> <intptr_t> array.__array_interface__["data"][0]


cdef Layer* layer_table(tuple layers) except NULL:
    """A malloc'ed Layer per LayerPlan (bpcore/nn/plan.py; an array that is None or
    empty is absent); caller frees."""
    cdef Layer* table = <Layer*> malloc(max(len(layers), 1) * sizeof(Layer))
    cdef int i
    if table == NULL:
        raise MemoryError()
    for i, spec in enumerate(layers):
        table[i].n_in = spec.n_in
        table[i].n_out = spec.n_out
        table[i].kind = spec.activation
        table[i].slope = spec.negative_slope
        table[i].W = address(spec.W)
        table[i].b = address(spec.b)
        table[i].c = address(spec.c)
        table[i].dW = address(spec.dW)
        table[i].db = address(spec.db)
        table[i].dc = address(spec.dc)
        table[i].A = address(spec.A)
        table[i].D = address(spec.D)
        table[i].G = address(spec.G)
        table[i].delta = address(spec.delta)
        table[i].dX = address(spec.dX)
    return table


cdef str describe(object array):
    """How an array that a plan names looks, for an error message."""
    if not isinstance(array, np.ndarray):
        return type(array).__name__
    layout = "C-contiguous" if array.flags.c_contiguous else "not C-contiguous"
    if not array.flags.aligned:
        layout += ", unaligned"
    return f"{array.dtype} array of shape {array.shape} ({layout})"


cdef int check_array(object array, tuple shape, object dtype, str name,
                     bint optional=False) except -1:
    """Raise ValueError unless ``array`` is an aligned, C-contiguous, native ``dtype``
    ndarray of ``shape``; with ``optional``, None or an empty array (absent) passes."""
    if optional and (array is None or (isinstance(array, np.ndarray) and array.size == 0)):
        return 0
    if not (isinstance(array, np.ndarray) and array.dtype == dtype and array.shape == shape
            and array.flags.c_contiguous and array.flags.aligned):
        raise ValueError(f"plan: {name} must be a C-contiguous {np.dtype(dtype).name} "
                         f"array of shape {shape}; got {describe(array)}")
    return 0


cdef bint present(object array):
    return array is not None and array.size > 0


cdef int check_layers(tuple layers, long n, object dtype, bint step) except -1:
    """Raise ValueError unless every LayerPlan's arrays are what the forward pass
    (and, with ``step``, the fused step's backward pass and update) dereferences: see
    bpcore/nn/plan.py. n: the batch size."""
    cdef long n_in, n_out, previous = -1
    if n <= 0:
        raise ValueError(f"plan: the batch size must be positive; got {n}")
    if len(layers) == 0:
        raise ValueError("plan: layers must hold at least one LayerPlan; got none")
    for i, spec in enumerate(layers):
        n_in, n_out = spec.n_in, spec.n_out
        where = f"layers[{i}]"
        if n_in <= 0 or n_out <= 0:
            raise ValueError(f"plan: {where} must have positive n_in and n_out; got "
                             f"{n_in} and {n_out}")
        if previous >= 0 and n_in != previous:
            raise ValueError(f"plan: {where}.n_in must be {previous}, the n_out of the "
                             f"layer below; got {n_in}")
        previous = n_out
        scaled = spec.activation == BP_SCALED_SIGMOID
        check_array(spec.W, (n_in, n_out), dtype, f"{where}.W")
        check_array(spec.b, (n_out,), dtype, f"{where}.b")
        check_array(spec.c, (n_out,), dtype, f"{where}.c", optional=not scaled)
        check_array(spec.A, (n, n_out), dtype, f"{where}.A")
        if not step:
            continue
        check_array(spec.dW, (n_in, n_out), dtype, f"{where}.dW")
        check_array(spec.db, (n_out,), dtype, f"{where}.db")
        check_array(spec.D, (n, n_out), dtype, f"{where}.D", optional=True)
        check_array(spec.G, (n, n_out), dtype, f"{where}.G", optional=True)
        # a layer with a cache writes its delta; scaled units (c, or their gates G)
        # have the scale's gradient
        check_array(spec.delta, (n, n_out), dtype, f"{where}.delta",
                    optional=not present(spec.D))
        check_array(spec.dc, (n_out,), dtype, f"{where}.dc",
                    optional=not (present(spec.c) or present(spec.G)))
        check_array(spec.dX, (n, n_in), dtype, f"{where}.dX", optional=i == 0)
    return 0


cdef int check_inside(object array, object buffer, str name, str buffer_name) except -1:
    """Raise ValueError unless ``array`` lies inside the 1-D ``buffer`` at a whole
    number of items from its start (the fused step finds the momentum of a weight
    at the weight's offset into the parameters)."""
    cdef intptr_t start, lo
    if not present(array):
        return 0
    start = <intptr_t> address(buffer)
    lo = <intptr_t> address(array)
    if (lo < start or lo + array.nbytes > start + buffer.nbytes
            or (lo - start) % buffer.itemsize != 0):
        raise ValueError(f"plan: {name} must be a view into {buffer_name}")
    return 0


cdef int check_step_plan(object plan) except -1:
    """Raise ValueError unless a StepPlan holds what Engine's kernels dereference."""
    params = plan.params
    if not (isinstance(params, np.ndarray) and params.ndim == 1 and params.size > 0
            and params.dtype in (np.dtype(np.float32), np.dtype(np.float64))):
        raise ValueError(f"plan: params must be a non-empty 1-D float32 or float64 "
                         f"array; got {describe(params)}")
    dtype, size = params.dtype, params.size
    check_array(params, (size,), dtype, "params")
    check_array(plan.grads, (size,), dtype, "grads")
    layers = plan.layers
    n = plan.batch_size
    check_layers(layers, n, dtype, True)
    check_array(plan.grad_output, (n, layers[len(layers) - 1].n_out), dtype,
                "grad_output")
    for i, spec in enumerate(layers):
        for attr in ("W", "b", "c"):
            check_inside(getattr(spec, attr), params, f"layers[{i}].{attr}", "params")
    state = tuple(plan.state)
    needed = {None: 0, "sgd": 0, "adam": 2}[plan.optimizer_kind]
    if len(state) < needed or len(state) > 2:
        raise ValueError(f"plan: state must hold {needed} to 2 buffers for "
                         f"{plan.optimizer_kind!r}; got {len(state)}")
    for i, buf in enumerate(state):
        check_array(buf, (size,), dtype, f"state[{i}]")
    if plan.optimizer_kind is not None and not isinstance(plan.scalars, Scalars):
        raise ValueError(f"plan: scalars must be a Scalars for a fused update; got "
                         f"{type(plan.scalars).__name__}")
    return 0


cdef inline bint overlap(const char* lo, const char* hi, const char* buf,
                         long count, size_t itemsize) noexcept nogil:
    """True when [lo, hi) meets the buffer of count items at buf (NULL: absent)."""
    return buf != NULL and lo < buf + count * itemsize and buf < hi


cdef bint meets_workspace(Layer* layers, int n_layers, long n, const char* lo,
                          const char* hi, size_t itemsize) noexcept nogil:
    """True when the bytes [lo, hi) overlap a buffer a pass writes (A, D, G, delta, dX)."""
    cdef int l
    cdef Layer* L
    for l in range(n_layers):
        L = &layers[l]
        if (overlap(lo, hi, L.A, n * L.n_out, itemsize)
                or overlap(lo, hi, L.D, n * L.n_out, itemsize)
                or overlap(lo, hi, L.G, n * L.n_out, itemsize)
                or overlap(lo, hi, L.delta, n * L.n_out, itemsize)
                or overlap(lo, hi, L.dX, n * L.n_in, itemsize)):
            return True
    return False


cdef bint array_meets(Layer* layers, int n_layers, long n, size_t itemsize,
                      object array) except -1:
    """True when an ndarray's memory overlaps a buffer of the workspace (buffers of
    ``itemsize`` bytes per item); other objects: False."""
    if not isinstance(array, np.ndarray) or array.size == 0:
        return False
    low, high = byte_bounds(array)
    return meets_workspace(layers, n_layers, n, <const char*> <intptr_t> low,
                           <const char*> <intptr_t> high, itemsize)


cdef class Busy:
    """Who is using one model right now: the thread that trains it (``train_step``,
    ``fit``, ``forward``, ``backward``, ``loss_and_grad``, ``zero_grad``,
    ``optimizer.step``) and how many ``predict`` calls are inside their forward pass.
    One per Model (``Model._busy``), read and written with the GIL held.

    A training call claims it (``training(what)``, a context manager) before any
    kernel releases the GIL: it raises RuntimeError, changing nothing, while another
    thread trains or predicts; a claim is re-entrant on its own thread (fit's steps,
    a callback that predicts). ``predict`` refuses while another thread trains."""
    cdef unsigned long owner     # the training thread's identifier (0: none)
    cdef long depth              # its nested claims
    cdef readonly long readers   # predict calls inside their forward pass
    cdef object what             # what the training thread is doing

    def training(self, str what):
        """Claim the model for the training call ``what`` on this thread; returns self,
        whose ``with`` block ends the claim. RuntimeError while another thread trains
        or predicts."""
        self.claim(what)
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    @property
    def trainer(self):
        """What the thread training the model is doing (say ``"fit"``), or None."""
        return self.what if self.owner != 0 else None

    cdef inline int claim(self, str what) except -1:
        cdef unsigned long me = PyThread_get_thread_ident()
        if self.owner == me:
            self.depth += 1
            return 0
        if self.owner != 0 or self.readers != 0:
            self.refuse(what)
        self.owner, self.depth, self.what = me, 1, what
        return 0

    cdef inline void release(self) noexcept:
        self.depth -= 1
        if self.depth <= 0:
            self.owner, self.depth, self.what = 0, 0, None

    cdef int refuse(self, str what) except -1:
        if self.owner != 0:
            doing = f"another thread is training it ({self.what})"
        else:
            doing = f"another thread is running predict on it ({self.readers} call(s))"
        raise RuntimeError(
            f"bpcore: {what} refused: {doing}. A model trains in one thread at a time, "
            "and not while other threads predict with it; concurrent predict calls are "
            "fine. Give each training thread its own model (copy.deepcopy) or "
            "serialise the calls with a lock")


cdef object aligned_empty_like(object array):
    """An uninitialised C-contiguous array like ``array``, its data on 64 bytes (as
    bpcore/_aligned.py's, which this layer does not import)."""
    raw = np.empty(array.nbytes + 64, np.uint8)
    cdef intptr_t start = (-(<intptr_t> address(raw))) % 64
    if start < 0:
        start += 64
    return raw[start:start + array.nbytes].view(array.dtype).reshape(array.shape)


cdef class Predictor:
    """Model.predict's fast path for one batch size: the forward pass without caches
    into its own activation buffers; returns a copy of the output.

    A call that finds it running in another thread (the GIL released in its
    kernel) runs on a spare: a Predictor over the same weights and activation
    buffers of its own, made on first need and kept (``spares``)."""
    cdef Layer* layers
    cdef int n_layers
    cdef long n
    cdef bint single
    cdef readonly object keep
    cdef object output
    cdef bint running             # a call is inside this predictor's forward pass
    cdef Predictor spare          # the next one to try when this one is running
    cdef Busy busy

    def __cinit__(self, tuple layers, long n, bint single, Busy busy=None):
        """layers: a LayerPlan per layer (bpcore/nn/plan.py), over activation buffers
        of n rows; single: float32 (else float64); busy: the model's Busy (None: one
        of its own). A plan whose arrays are not what the pass reads raises
        ValueError."""
        check_layers(layers, n, np.dtype(np.float32 if single else np.float64), False)
        self.n_layers = len(layers)
        self.layers = layer_table(layers)
        self.n, self.single = n, single
        self.output = layers[len(layers) - 1].A   # (no wraparound in kernels)
        self.keep = layers
        self.busy = Busy() if busy is None else busy

    def __dealloc__(self):
        free(self.layers)

    @property
    def spares(self):
        """How many spares this predictor has made for concurrent calls."""
        cdef long count = 0
        cdef Predictor p = self.spare
        while p is not None:
            count += 1
            p = p.spare
        return count

    def overlaps(self, array):
        """True when ``array``'s memory overlaps a buffer this forward pass writes
        (then ``run`` refuses it: pass a copy)."""
        return array_meets(self.layers, self.n_layers, self.n,
                           4 if self.single else 8, array)

    cdef Predictor twin(self):
        """A predictor over the same weights with activation buffers of its own."""
        layers = tuple(spec._replace(A=aligned_empty_like(spec.A)) for spec in self.keep)
        return Predictor(layers, self.n, self.single, self.busy)

    def run(self, X):
        """The output for X as a new array, or None when X needs the full validation
        (other dtype, layout or shape, NaN/inf) or overlaps this pass's buffers.
        RuntimeError while another thread trains the model."""
        cdef Predictor p = self
        cdef Busy busy = self.busy
        cdef unsigned long me
        cdef bint ok
        while p.running:
            # check-out: the first predictor of the chain that no call is running
            # (making a spare runs Python code, so the loop tests again after it)
            if p.spare is None:
                p.spare = p.twin()
            p = p.spare
        # from the test of p.running to here no Python code runs: no other thread can
        # take p, or start training, in between
        me = PyThread_get_thread_ident()
        if busy.owner != 0 and busy.owner != me:
            busy.refuse("predict")
        p.running = True
        busy.readers += 1
        try:
            if self.single:
                ok = predict_into[float](p, X)
            else:
                ok = predict_into[double](p, X)
            return p.output.copy() if ok else None
        finally:
            p.running = False
            busy.readers -= 1


cdef inline char* matrix_data(object X, int typenum, long rows, long cols):
    """The data of X when it is a native-endian, aligned, C-contiguous ndarray of
    typenum with that shape (cols 0: a 1-D array of rows items), else NULL: checked
    on the ndarray's header, cheaper than acquiring a typed memoryview."""
    cdef cnp.ndarray a
    cdef cnp.npy_intp* dims
    if not cnp.PyArray_Check(X):
        return NULL
    a = <cnp.ndarray> X
    if (not cnp.PyArray_EquivTypenums(cnp.PyArray_TYPE(a), typenum)
            or not cnp.PyArray_ISCARRAY_RO(a)
            or not cnp.PyArray_ISNOTSWAPPED(a)):
        return NULL
    dims = cnp.PyArray_DIMS(a)
    if cols == 0:
        if cnp.PyArray_NDIM(a) != 1 or dims[0] != rows:
            return NULL
    elif cnp.PyArray_NDIM(a) != 2 or dims[0] != rows or dims[1] != cols:
        return NULL
    return <char*> cnp.PyArray_DATA(a)


cdef bint predict_into(Predictor p, X, floating* dtype=NULL):
    cdef long count = p.n * p.layers[0].n_in
    cdef const floating* x = <const floating*> matrix_data(
        X, cnp.NPY_FLOAT if floating is float else cnp.NPY_DOUBLE, p.n, p.layers[0].n_in)
    cdef bint ok
    if x == NULL:
        return False
    if meets_workspace(p.layers, p.n_layers, p.n, <const char*> x,
                       <const char*> (x + count), sizeof(floating)):
        return False
    with nogil:
        ok = all_finite(x, count)
        if ok:
            forward_layers(p.layers, p.n_layers, p.n, x, False)
    return ok


cdef class Scalars:
    """The optimizer's numbers that the fused step reads each call, kept as C fields so
    that reading them costs no attribute lookup: the step count and the
    hyper-parameters of SGD (lr, momentum, weight_decay, nesterov) and Adam (lr,
    beta1, beta2, eps, weight_decay). An optimizer holds one for its whole life and
    copies its hyper-parameters here whenever one is set
    (bpcore.optim.Optimizer._sync_scalars); its ``steps`` property reads and writes
    ``steps`` here. A plan hands it to the engine, which advances ``steps``."""
    cdef public long long steps
    cdef public double lr, momentum, weight_decay, beta1, beta2, eps
    cdef public bint nesterov


cdef struct Update:
    # one step's numbers, as fused_step reads them: the loss's and the optimizer's
    double scale          # the loss reduction's factor times the call's gradient factor
    double lr             # SGD: lr; Adam: lr / (1 - beta1^t), the corrected step size
    double momentum       # SGD
    double weight_decay   # SGD and Adam (L2 on the gradient)
    bint nesterov         # SGD
    double beta1, beta2, eps   # Adam
    double inv_root_bc2   # Adam: 1 / sqrt(1 - beta2^t)


cdef class Engine:
    """The fused training step of one StepPlan (bpcore/nn/plan.py)."""
    cdef Layer* layers
    cdef int n_layers, loss_code, optimizer_code
    cdef long n, n_params
    cdef bint single
    cdef double scale
    cdef char* params
    cdef char* grads
    cdef char* grad_output
    cdef char* state1
    cdef char* state2
    cdef char* scratch            # W^T of a layer (transpose_first), or NULL (none)
    cdef long scratch_size
    cdef readonly object plan      # the arrays behind every pointer
    cdef readonly tuple state      # the optimizer state buffers this engine updates
    cdef object scratch_array
    cdef Scalars scalars
    cdef bint unit                # the output layer runs through unit_mse (unit_output)
    cdef readonly bint blas_parallel  # BLAS had more than one thread when planned
    cdef readonly int status       # STEP_TAKEN, STEP_NONFINITE or STEP_UNSAFE (last run)

    def __cinit__(self, plan):
        """plan: a StepPlan. Its blas_parallel says whether BLAS runs more than one
        thread (then SGD with momentum hands its update to BLAS where BLAS takes the
        products, and Adam shares its pass with bpcore's helper thread: fused_step).
        A plan whose arrays are not what the kernels dereference (check_step_plan)
        raises ValueError."""
        layers = plan.layers
        params, state = plan.params, plan.state
        if plan.loss_kind not in LOSS_KINDS:
            raise ValueError(f"plan.loss_kind must be one of {sorted(LOSS_KINDS)}; got "
                             f"{plan.loss_kind!r}")
        if plan.optimizer_kind is not None and plan.optimizer_kind not in OPTIMIZER_KINDS:
            raise ValueError(f"plan.optimizer_kind must be None or one of "
                             f"{sorted(OPTIMIZER_KINDS)}; got {plan.optimizer_kind!r}")
        check_step_plan(plan)
        self.n_layers = len(layers)
        self.layers = layer_table(layers)
        self.single = params.dtype.itemsize == 4
        self.n, self.n_params = plan.batch_size, params.size
        self.params, self.grads = address(params), address(plan.grads)
        self.grad_output = address(plan.grad_output)
        self.loss_code, self.scale = LOSS_KINDS[plan.loss_kind], plan.scale
        self.optimizer_code = (OPT_NONE if plan.optimizer_kind is None
                               else OPTIMIZER_KINDS[plan.optimizer_kind])
        self.state = tuple(state)
        self.scalars = plan.scalars
        self.state1 = address(state[0]) if len(state) > 0 else NULL
        self.state2 = address(state[1]) if len(state) > 1 else NULL
        cdef long size = 0
        for spec in layers[1:]:
            if transpose_first(self.n, spec.n_in, spec.n_out):
                size = max(size, spec.n_in * spec.n_out)
        # an ndarray, so that it counts where NumPy memory is counted (at most
        # TRANSPOSE_MAX entries)
        self.scratch_array = np.empty(size, params.dtype)
        self.scratch, self.scratch_size = address(self.scratch_array), size
        self.plan = plan
        self.unit = unit_output(self)
        self.blas_parallel = plan.blas_parallel

    def __dealloc__(self):
        free(self.layers)

    @property
    def fused_update(self):
        """True when the optimizer's update runs inside the step (SGD, Adam)."""
        return self.optimizer_code != OPT_NONE

    def overlaps(self, array):
        """True when ``array``'s memory overlaps a buffer the step writes: the
        workspace, dL/doutput, the parameters, gradients and optimizer state (then
        ``run`` refuses it as X or target: pass a copy)."""
        if not isinstance(array, np.ndarray) or array.size == 0:
            return False
        low, high = byte_bounds(array)
        return engine_meets(self, <const char*> <intptr_t> low,
                            <const char*> <intptr_t> high)

    def run(self, X, target, int flags=0, double factor=1.0):
        """One fused step on (X, target) with the Scalars' current hyper-parameters,
        their step count advanced; returns the loss value. None, with nothing changed,
        when the arguments need the full validation (other dtype, layout or shape,
        NaN/inf, labels out of range, memory this step writes).

        ``flags``: KEEP_GRADS writes every gradient into ``grads`` (otherwise the
        update may be folded into the products and leave some unwritten). GUARD
        keeps them too and, before the update, checks the loss and the gradients
        for NaN/inf and bounds the update: when a value is not finite
        (``status`` STEP_NONFINITE) or the update might overflow (STEP_UNSAFE), no
        parameter, optimizer buffer or step count changes; the loss value is
        returned all the same.

        ``factor`` (positive and finite, else ValueError): the gradients this call
        writes are the loss's times ``factor``, folded into dL/doutput at no cost. The
        loss value returned is the loss's own: computed with the factor, then divided
        by it, which gives the same number when ``factor`` is a power of two. A
        DistributedOptimizer's 1/size weight comes this way (FusedStep.prescaled)."""
        return self.run_step(X, target, flags, factor)

    cdef object run_step(self, X, target, int flags, double factor=1.0):
        """run, called from C (train_step)."""
        cdef Update u
        cdef long long t
        cdef Scalars s = self.scalars
        u.lr = u.momentum = u.weight_decay = u.beta1 = u.beta2 = u.eps = 0
        u.inv_root_bc2 = 1
        u.nesterov = False
        if self.optimizer_code == OPT_SGD:
            u.lr, u.momentum, u.weight_decay, u.nesterov = (
                s.lr, s.momentum, s.weight_decay, s.nesterov)
            if u.momentum != 0 and self.state1 == NULL:
                return None          # momentum switched on after the plan was made
        elif self.optimizer_code == OPT_ADAM:
            t = s.steps + 1
            u.beta1, u.beta2, u.eps, u.weight_decay = s.beta1, s.beta2, s.eps, s.weight_decay
            u.lr = s.lr / (1.0 - u.beta1 ** t)
            u.inv_root_bc2 = 1.0 / sqrt(1.0 - u.beta2 ** t)
        if flags & GUARD_FLAG:
            flags |= KEEP_GRADS_FLAG
        if not (factor > 0 and isfinite(factor)):
            raise ValueError(f"factor must be positive and finite; got {factor!r}")
        u.scale = self.scale * factor
        self.status = STATUS_TAKEN
        if self.single:
            value = acquire_and_run[float](self, X, target, &u, flags)
        else:
            value = acquire_and_run[double](self, X, target, &u, flags)
        if (value is not None and self.optimizer_code != OPT_NONE
                and self.status == STATUS_TAKEN):
            s.steps += 1
        if value is not None and factor != 1.0:
            value = <double> value / factor
        return value


cdef bint engine_meets(Engine e, const char* lo, const char* hi) noexcept nogil:
    """True when the bytes [lo, hi) overlap a buffer the fused step writes."""
    cdef size_t size = 4 if e.single else 8
    return (meets_workspace(e.layers, e.n_layers, e.n, lo, hi, size)
            or overlap(lo, hi, e.grad_output, e.n * e.layers[e.n_layers - 1].n_out, size)
            or overlap(lo, hi, e.params, e.n_params, size)
            or overlap(lo, hi, e.grads, e.n_params, size)
            or overlap(lo, hi, e.state1, e.n_params, size)
            or overlap(lo, hi, e.state2, e.n_params, size)
            or overlap(lo, hi, e.scratch, e.scratch_size, size))


cdef object acquire_and_run(Engine e, X, target, const Update* u, int flags,
                            floating* dtype=NULL):
    """Run the step when X and the target are arrays this engine takes as they are
    and hold valid values; else None, with nothing changed."""
    cdef int typenum = cnp.NPY_FLOAT if floating is float else cnp.NPY_DOUBLE
    cdef long n = e.n, n_in = e.layers[0].n_in, k = e.layers[e.n_layers - 1].n_out, i
    cdef long nx = n * n_in
    cdef const floating* x = <const floating*> matrix_data(X, typenum, n, n_in)
    cdef const floating* t = NULL
    cdef const int64_t* labels = NULL
    cdef bint ok = True
    cdef double value = 0.0
    if x == NULL:
        return None
    if e.loss_code == LOSS_CE_LABELS:
        labels = <const int64_t*> matrix_data(target, cnp.NPY_INT64, n, 0)
        if labels == NULL:
            return None
    else:
        t = <const floating*> matrix_data(target, typenum, n, k)
        if t == NULL:
            return None
    # X or the target inside a buffer the step writes (a forward output fed back)
    if engine_meets(e, <const char*> x, <const char*> (x + nx)):
        return None
    if t != NULL and engine_meets(e, <const char*> t, <const char*> (t + n * k)):
        return None
    with nogil:
        ok = all_finite(x, nx)
        if ok and labels != NULL:
            for i in range(n):
                if labels[i] < 0 or labels[i] >= k:
                    ok = False
                    break
        elif ok:
            ok = all_finite(t, n * k)
            if ok and (e.loss_code == LOSS_BCE or e.loss_code == LOSS_CE_PROBS
                       or e.loss_code == LOSS_POISSON):
                for i in range(n * k):
                    if t[i] < 0 or (e.loss_code == LOSS_BCE and t[i] > 1):
                        ok = False
                        break
        if ok:
            value = fused_step(e, x, t, labels, u, flags)
    if not ok:
        return None
    return value


cdef inline bint delta_in_store(Layer* layers, int l, long n) noexcept nogil:
    """Whether the fused step forms layer l's delta in the store of layer l + 1's
    product dX = delta . W^T (small_delta_back), skipping the layer's own delta pass:
    it has a derivative cache, no gates, and the own loops take that product with its
    epilogue (fused_product)."""
    return (layers[l].D != NULL and layers[l].G == NULL
            and fused_product(True, n, layers[l + 1].n_in, layers[l + 1].n_out))


cdef inline bint relu_from_output(Layer* layers, int n_layers, int l, long n) noexcept nogil:
    """Whether the fused step reads layer l's ReLU derivative off its output (1 where
    positive) instead of a cache: then the forward pass does not write the cache."""
    return (layers[l].kind == BP_RELU and l + 1 < n_layers
            and delta_in_store(layers, l, n))


cdef inline bint unit_output(Engine e) noexcept nogil:
    """Whether the fused step runs its output layer with the loss in one call
    (unit_mse): one identity unit without scale, under the unweighted squared error,
    over a layer whose delta is formed in a product's store (delta_in_store), with
    few enough inputs."""
    cdef int top = e.n_layers - 1
    cdef Layer* L = &e.layers[top]
    return (e.loss_code == LOSS_MSE and top >= 1 and L.n_out == 1
            and L.kind == BP_IDENTITY and L.c == NULL and L.G == NULL and L.D == NULL
            and unit_mse_fits(L.n_in, e.single) and delta_in_store(e.layers, top - 1, e.n))


cdef void forward_layers(Layer* layers, int n_layers, long n, const floating* X,
                         bint keep_caches, int count=-1) noexcept nogil:
    """Forward through the first ``count`` layers (-1: every layer): the product,
    then bias + activation (+ the derivative cache and gates when keep_caches, except a
    ReLU cache that the fused step reads off the output: relu_from_output) in one pass
    over the output."""
    cdef const floating* inputs = X
    cdef Layer* L
    cdef int l
    cdef floating* D
    if count < 0:
        count = n_layers
    for l in range(count):
        L = &layers[l]
        D = <floating*> L.D if keep_caches else NULL
        if D != NULL and relu_from_output(layers, n_layers, l, n):
            D = NULL
        if (L.c == NULL and (L.kind == BP_RELU or L.kind == BP_LEAKY_RELU
                             or L.kind == BP_IDENTITY)
                and fused_product(False, n, L.n_out, L.n_in)):
            # bias and activation applied as the product's blocks are stored
            small_dense_forward(n, L.n_out, L.n_in, inputs, <floating*> L.W,
                                <floating*> L.b, <floating*> L.A, D, L.kind, L.slope)
            inputs = <floating*> L.A
            continue
        gemm(False, False, <int> n, <int> L.n_out, <int> L.n_in, <floating> 1.0,
             inputs, <int> L.n_in, <floating*> L.W, <int> L.n_out, <floating> 0.0,
             <floating*> L.A, <int> L.n_out)
        bias_activation(n, L.n_out, <floating*> L.A, <floating*> L.b, <floating*> L.c, NULL,
                        D, <floating*> L.G if keep_caches else NULL, L.kind, L.slope)
        inputs = <floating*> L.A


cdef inline bint transpose_first(long n, long n_in, long n_out) noexcept nogil:
    """Whether dX = delta . W^T of a layer goes faster as a plain product with a copy
    of W^T. OpenBLAS (0.3.x, SkylakeX kernels) takes products of at most 100^3
    multiply-adds to its small-matrix kernels, except this transposed one when
    n * n_in > 1200 or n_out < 32: then it packs its operands, which costs more than
    the product (W1: 5.2 -> 4.0 us per step with the copy, before the fused rule gave
    W1's delta . W^T to the own loops on AVX-512 CPUs; where the small kernel
    takes the transposed product, the copy only costs: W1b step 1.7 -> 2.5 us). The
    copy itself (a strided loop) must stay small beside the product: W of at most
    TRANSPOSE_MAX entries, and batches of 8 or more (a 256 x 128 W at batch 8 cost
    60 us more per step)."""
    if small_product(False, True, n, n_in, n_out):
        return False                 # bpcore's own loops: they copy W^T themselves
                                     # (above 8 rows) or read W's rows (up to 8)
    return (n * n_in * n_out <= TRANSPOSE_FIRST_WORK and n_in * n_out <= TRANSPOSE_MAX
            and n >= 8 and (n * n_in > 1200 or n_out < 32))


cdef inline char* velocity(Engine e, char* parameter, double momentum) noexcept nogil:
    """The momentum buffer's entry of a parameter (NULL without momentum)."""
    if momentum == 0:
        return NULL
    return e.state1 + (parameter - e.params)


cdef inline double abs_sum(const floating* x, long n, double* negative) noexcept nogil:
    """The sum of |x[i]| in double (finite exactly when every entry is); with
    ``negative``, the sum of |x[i]| - x[i] there (0 exactly when none is below 0)."""
    if floating is float:
        return bp_abs_sum_f32(n, x, negative)
    else:
        return bp_abs_sum_f64(n, x, negative)


cdef int guard_status(Engine e, double value, const Update* u,
                      floating* dtype=NULL) noexcept nogil:
    """Whether the update of a GUARD step may go ahead, from the loss value and, in
    one pass over each flat buffer, the sums of magnitudes of the gradients (G), the
    parameters (P) and the optimizer's state (S1, S2): STATUS_NONFINITE when the loss
    or a gradient is NaN or infinite; STATUS_UNSAFE unless bounds on the magnitudes
    of every value the update computes (in the element type, whose largest finite
    value is MAX) stay below MAX / 16, which rounding cannot carry past MAX; else
    STATUS_TAKEN, and then every parameter and state entry comes out finite.

    With g' = g + weight_decay * p, |g'| <= G + wd P (= Gp) entry by entry. SGD: the
    velocity's |mu v + g'| <= mu S1 + Gp (= V), the step's |lr * (g' + mu v_new)|
    (Nesterov) or |lr * v_new| at most lr (Gp + mu V) or lr V, so |p_new| <= P + that.
    Adam: |m_new| <= beta1 S1 + (1 - beta1) Gp (= M), v_new <= beta2 S2 + (1 - beta2)
    Gp^2 and, with the denominator sqrt(v_new) / sqrt(bc2) + eps >= eps, |p_new|
    <= P + step_size M / eps; exp_avg_sq must hold no negative entry (its square
    root). Entries are bounded by the sums, so the test is loose by up to the number
    of parameters: a step it refuses is not lost, fit takes it the two-call way."""
    cdef double limit = (FLT_MAX if floating is float else DBL_MAX) / 16
    cdef double G, P, S1, S2, negative = 0
    cdef double lr, mu, wd, gp, v, step, bound, m, eps
    if not isfinite(value):
        return STATUS_NONFINITE
    G = abs_sum(<floating*> e.grads, e.n_params, NULL)
    if not isfinite(G):
        return STATUS_NONFINITE
    P = abs_sum(<floating*> e.params, e.n_params, NULL)
    if e.optimizer_code == OPT_SGD:
        lr, mu, wd = u.lr, u.momentum, u.weight_decay   # (validated: not negative)
        if not (lr < limit and mu < limit and wd < limit):
            return STATUS_UNSAFE
        gp = G + wd * P
        v = 0.0
        step = gp
        if mu != 0:
            S1 = abs_sum(<floating*> e.state1, e.n_params, NULL)
            v = mu * S1 + gp
            step = gp + mu * v if u.nesterov else v
        bound = P + lr * step
        if not (gp < limit and v < limit and mu * v < limit and bound < limit):
            return STATUS_UNSAFE
    elif e.optimizer_code == OPT_ADAM:
        eps = <floating> u.eps            # as the pass reads it (a float32 may be 0)
        if not (eps > 0 and u.lr < limit and u.inv_root_bc2 < limit
                and u.weight_decay < limit):
            return STATUS_UNSAFE
        S1 = abs_sum(<floating*> e.state1, e.n_params, NULL)
        S2 = abs_sum(<floating*> e.state2, e.n_params, &negative)
        gp = G + u.weight_decay * P
        m = u.beta1 * S1 + (1 - u.beta1) * gp
        v = u.beta2 * S2 + (1 - u.beta2) * gp * gp
        bound = P + u.lr * (m / eps)
        if not (negative == 0 and gp * gp < limit and m < limit and v < limit
                and sqrt(v) * u.inv_root_bc2 < limit and m / eps < limit
                and bound < limit):
            return STATUS_UNSAFE
    return STATUS_TAKEN


cdef double fused_step(Engine e, const floating* X, const floating* target,
                       const int64_t* labels, const Update* u, int flags) noexcept nogil:
    cdef long n = e.n, i
    # SGD's numbers (zero for Adam, whose pass reads u itself)
    cdef double lr = u.lr, momentum = u.momentum, weight_decay = u.weight_decay
    cdef bint nesterov = u.nesterov
    cdef int l
    cdef Layer* L
    cdef const floating* inputs = X
    cdef const floating* upstream
    cdef const floating* dlt
    cdef floating* output
    cdef double value = 0.0
    cdef bint unit = e.unit, relu
    cdef Layer* below
    forward_layers(e.layers, e.n_layers, n, X, True, e.n_layers - 1 if unit else -1)
    # loss and dL/doutput
    L = &e.layers[e.n_layers - 1]
    output = <floating*> L.A
    if unit:
        # the output layer's forward, the loss, the layer's gradients and the delta
        # of the layer below (with its bias gradient) in one call
        below = &e.layers[e.n_layers - 2]
        relu = relu_from_output(e.layers, e.n_layers, e.n_layers - 2, n)
        value = unit_mse(n, L.n_in, <floating*> below.A, <floating*> L.W,
                         <floating*> L.b, target, u.scale, output,
                         <floating*> e.grad_output,
                         <floating*> (below.A if relu else below.D), relu,
                         <floating*> below.delta, <floating*> below.db,
                         <floating*> L.dW, <floating*> L.db)
    elif e.loss_code == LOSS_MSE:
        value = mse_kernel(n, L.n_out, output, target, <floating*> NULL,
                           <floating*> e.grad_output, u.scale)
    elif e.loss_code == LOSS_CE_LABELS:
        value = cross_entropy_labels_kernel(n, L.n_out, output, labels, <floating*> NULL,
                                            <floating*> e.grad_output, u.scale)
    elif e.loss_code == LOSS_CE_PROBS:
        value = cross_entropy_probs_kernel(n, L.n_out, output, target, <floating*> NULL,
                                           <floating*> e.grad_output, u.scale)
    elif e.loss_code == LOSS_BCE:
        value = bce_kernel(n, L.n_out, output, target, <floating*> NULL,
                           <floating*> e.grad_output, u.scale)
    else:
        value = poisson_kernel(n, L.n_out, output, target, <floating*> NULL,
                               <floating*> e.grad_output, u.scale)
    # backward: gradients overwritten (beta = 0), no dL/dX for the input
    # Plain SGD (no momentum, no weight decay) folds its update into the products:
    # W += -lr * X^T.delta straight into W after dX has been taken from the old W,
    # which saves writing dW and a whole optimizer pass over the parameters.
    # (none of the folds when the gradients are to be kept: KEEP_GRADS, GUARD)
    cdef bint keep = (flags & KEEP_GRADS_FLAG) != 0
    cdef bint fold = (e.optimizer_code == OPT_SGD and momentum == 0 and weight_decay == 0
                      and not keep)
    # Other SGD at batch sizes up to BP_OUTER_ROWS (momentum, weight decay): each
    # weight's gradient is formed and consumed by the update in one pass
    # (outer_sgd_update), the biases are updated layer by layer, and the pass over
    # all parameters is skipped.
    cdef bint outer = (e.optimizer_code == OPT_SGD and not fold and n <= BP_OUTER_ROWS
                       and (momentum == 0 or e.state1 != NULL) and not keep)
    # SGD with momentum (no weight decay, not Nesterov) above that, with more than one
    # BLAS thread: where BLAS takes a layer's weight-gradient product, the product adds
    # itself into the momentum buffer, buf = momentum * buf + X^T.delta (beta =
    # momentum), and BLAS's axpy does W -= lr * buf, both on all of BLAS's threads
    # instead of bpcore's one pass on one, and dW is not written (W2 at 2 threads: a
    # step up to 8% faster; at 1 thread 2-6% slower than the one pass, so not there).
    # (Not at lr 0: BLAS's axpy returns at once when alpha is 0, so a non-finite
    # gradient would reach the momentum buffer and not the weights, where fit's guard
    # looks for it; the one pass writes lr * buf into them, NaN included.)
    cdef bint into_velocity = (e.optimizer_code == OPT_SGD and momentum != 0 and weight_decay == 0
                               and not nesterov and not outer and e.state1 != NULL
                               and e.blas_parallel and lr != 0 and not keep)
    cdef floating* buf
    cdef bint delta_done = False
    upstream = <floating*> e.grad_output
    for l in range(e.n_layers - 1, -1, -1):
        L = &e.layers[l]
        inputs = X if l == 0 else <floating*> e.layers[l - 1].A
        if unit and l == e.n_layers - 1:
            # unit_mse wrote dW, db and the delta below: update W and b from them
            if fold or outer or into_velocity:
                sgd_update(L.n_in, <floating*> L.W, <floating*> L.dW,
                           <floating*> velocity(e, L.W, momentum), lr, momentum, weight_decay, nesterov)
                sgd_update(1, <floating*> L.b, <floating*> L.db,
                           <floating*> velocity(e, L.b, momentum), lr, momentum, weight_decay, nesterov)
            delta_done = True
            continue
        if not delta_done:
            delta_and_bias_grad(n, L.n_out, upstream, <floating*> L.D, <floating*> L.G,
                                <floating*> L.delta, <floating*> L.db, <floating*> L.dc,
                                True)
        delta_done = False
        dlt = <floating*> L.delta if L.D != NULL else upstream
        if l > 0:
            below = &e.layers[l - 1]
            if delta_in_store(e.layers, l - 1, n):
                # dX . D of the layer below and its bias gradient, in the product's
                # store: the layer below skips its delta pass (a ReLU below: its
                # output's sign instead of D, which forward_layers did not write)
                relu = relu_from_output(e.layers, e.n_layers, l - 1, n)
                small_delta_back(n, L.n_in, L.n_out, dlt, <floating*> L.W,
                                 <floating*> (below.A if relu else below.D),
                                 <floating*> below.delta, <floating*> below.db, relu)
                delta_done = True
            elif e.scratch != NULL and transpose_first(n, L.n_in, L.n_out):
                # dX = delta . (W^T as a row-major copy): a plain product, which BLAS's
                # small-matrix kernels take where they refuse delta . W^T
                transpose(L.n_in, L.n_out, <floating*> L.W, <floating*> e.scratch)
                gemm(False, False, <int> n, <int> L.n_in, <int> L.n_out, <floating> 1.0,
                     dlt, <int> L.n_out, <floating*> e.scratch, <int> L.n_in,
                     <floating> 0.0, <floating*> L.dX, <int> L.n_in)
            else:
                gemm(False, True, <int> n, <int> L.n_in, <int> L.n_out, <floating> 1.0,
                     dlt, <int> L.n_out, <floating*> L.W, <int> L.n_out, <floating> 0.0,
                     <floating*> L.dX, <int> L.n_in)
            upstream = <floating*> L.dX
        if fold:
            gemm(True, False, <int> L.n_in, <int> L.n_out, <int> n, <floating> -lr,
                 inputs, <int> L.n_in, dlt, <int> L.n_out, <floating> 1.0,
                 <floating*> L.W, <int> L.n_out)
            sgd_update(L.n_out, <floating*> L.b, <floating*> L.db, NULL, lr, 0.0, 0.0, False)
            if L.c != NULL:
                sgd_update(L.n_out, <floating*> L.c, <floating*> L.dc, NULL, lr, 0.0, 0.0,
                           False)
        elif outer or into_velocity:
            buf = <floating*> velocity(e, L.W, momentum)
            if outer:
                outer_sgd_update(n, L.n_in, L.n_out, inputs, dlt, <floating*> L.W, buf,
                                 lr, momentum, weight_decay, nesterov)
            elif small_product(True, False, L.n_in, L.n_out, n):
                # bpcore's own loops: dW, then this layer's share of the one pass (a
                # BLAS axpy here would wake BLAS's threads, asleep at these sizes)
                gemm(True, False, <int> L.n_in, <int> L.n_out, <int> n, <floating> 1.0,
                     inputs, <int> L.n_in, dlt, <int> L.n_out, <floating> 0.0,
                     <floating*> L.dW, <int> L.n_out)
                sgd_update(L.n_in * L.n_out, <floating*> L.W, <floating*> L.dW, buf, lr,
                           momentum, weight_decay, nesterov)
            else:
                blas_gemm(True, False, <int> L.n_in, <int> L.n_out, <int> n,
                          <floating> 1.0, inputs, <int> L.n_in, dlt, <int> L.n_out,
                          <floating> momentum, buf, <int> L.n_out)
                blas_axpy(L.n_in * L.n_out, <floating> -lr, buf, <floating*> L.W)
            # the bias (and scale) of the layer, updated here as its W
            sgd_update(L.n_out, <floating*> L.b, <floating*> L.db,
                       <floating*> velocity(e, L.b, momentum), lr, momentum, weight_decay, nesterov)
            if L.c != NULL:
                sgd_update(L.n_out, <floating*> L.c, <floating*> L.dc,
                           <floating*> velocity(e, L.c, momentum), lr, momentum, weight_decay, nesterov)
        else:
            gemm(True, False, <int> L.n_in, <int> L.n_out, <int> n, <floating> 1.0,
                 inputs, <int> L.n_in, dlt, <int> L.n_out, <floating> 0.0,
                 <floating*> L.dW, <int> L.n_out)
    # GUARD: nothing is updated unless the loss and gradients are finite and the
    # update cannot overflow (every update is in the one pass below, as keep is set)
    if flags & GUARD_FLAG and e.optimizer_code != OPT_NONE:
        e.status = guard_status(e, value, u, <floating*> NULL)
        if e.status != STATUS_TAKEN:
            return value
    # one pass of the optimizer over the flat buffers
    if (e.optimizer_code == OPT_SGD and not fold and not outer and not into_velocity
            and e.blas_parallel):
        # as Adam's below: on BLAS's threads, this pass runs on two CPUs too
        sgd_update_shared(e.n_params, <floating*> e.params, <floating*> e.grads,
                          <floating*> e.state1, lr, momentum, weight_decay, nesterov)
    elif e.optimizer_code == OPT_SGD and not fold and not outer and not into_velocity:
        sgd_update(e.n_params, <floating*> e.params, <floating*> e.grads,
                   <floating*> e.state1, lr, momentum, weight_decay, nesterov)
    elif e.optimizer_code == OPT_ADAM and e.blas_parallel:
        # on BLAS's threads the products ran on two CPUs: so does this pass (_pool.h)
        adam_update_shared(e.n_params, <floating*> e.params, <floating*> e.grads,
                           <floating*> e.state1, <floating*> e.state2, u.lr, u.beta1,
                           u.beta2, u.eps, u.weight_decay, 1.0, u.inv_root_bc2)
    elif e.optimizer_code == OPT_ADAM:
        adam_update(e.n_params, <floating*> e.params, <floating*> e.grads,
                    <floating*> e.state1, <floating*> e.state2, u.lr, u.beta1, u.beta2, u.eps,
                    u.weight_decay, 1.0, u.inv_root_bc2)
    return value


def _adam_shared_rows(floating[:, ::1] params, floating[:, ::1] grads,
                      floating[:, ::1] exp_avg, floating[:, ::1] exp_avg_sq,
                      double step_size, double beta1, double beta2, double eps,
                      double l2, double inv_root_bc2):
    """For tests: the fused step's shared Adam pass (_pool.h) on each row of the four
    arrays in turn, back to back without the GIL, as at more than one BLAS thread.
    Returns (the chunks bpcore's helper thread has done in this process so far, the
    passes after whose return the helper was still on its turn: 0 unless another
    thread's pass had begun)."""
    cdef Py_ssize_t i, rows = params.shape[0], n = params.shape[1]
    cdef long late = 0
    if not (grads.shape[0] == exp_avg.shape[0] == exp_avg_sq.shape[0] == rows and
            grads.shape[1] == exp_avg.shape[1] == exp_avg_sq.shape[1] == n):
        raise ValueError("params, grads, exp_avg and exp_avg_sq need one shape")
    with nogil:
        for i in range(rows):
            if n > 0:
                adam_update_shared(n, &params[i, 0], &grads[i, 0], &exp_avg[i, 0],
                                   &exp_avg_sq[i, 0], step_size, beta1, beta2, eps, l2,
                                   1.0, inv_root_bc2)
                late += bp_pool_helper_on_turn()
    return bp_pool_helper_chunks(), late


include "_train_step.pxi"
