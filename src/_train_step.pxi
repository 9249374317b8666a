# Model.train_step: the fast path from a Python call to the fused engine.
#
# Included at the end of _engine.pyx (one extension module, so that calling the
# engine is a C call: as a module of its own, the Python-level call and its checks
# cost W1 3% of its step). bpcore/nn/model.py binds ``train_step`` from here as
# Model's method, so that a step which the model's last fused step applies to runs
# without a Python frame of its own. It is Model's code, written in Cython: it reads
# the model's ``_fused`` (a FusedStep made by bpcore/nn/fused.py) and decides whether
# that step applies to this call. The Engine it then runs sees only its plan, never
# the model, loss or optimizer. Owns nothing; holds the GIL (the engine releases it).


cdef class FusedStep:
    """A fused engine with what it was planned for: the loss object and its
    reduction, the optimizer and the state buffers the plan points into, and whether
    the model has dropout (the kernel has none, so it applies in evaluation mode only).

    ``prescaled``: the optimizer steps after the kernel and takes gradients that the
    kernel already weighted (bpcore.nn.fused.prescales: a DistributedOptimizer,
    whose 1/size the kernel folds into dL/doutput instead of a pass over ``grads``
    after the reduction): each run asks it for the factor, then calls its
    ``_step_prescaled()`` instead of ``step()``."""
    cdef readonly Engine engine
    cdef readonly object loss, optimizer, reduction
    cdef readonly tuple state_names, state
    cdef readonly bint has_dropout, fused_update, prescaled
    cdef readonly Busy busy        # the model's: claimed around each run (_step)

    def __cinit__(self, Engine engine not None, loss, optimizer, tuple state_names,
                  bint has_dropout, Busy busy not None, bint prescaled=False):
        self.engine, self.loss, self.optimizer = engine, loss, optimizer
        self.busy = busy
        self.reduction = loss.reduction
        self.state_names, self.state = state_names, engine.state
        self.has_dropout, self.fused_update = has_dropout, engine.fused_update
        self.prescaled = prescaled and not engine.fused_update

    cpdef double factor(self, optimizer) except? -1:
        """The factor this run folds into the gradients: the optimizer's
        ``_fused_factor()`` when ``prescaled``, else 1."""
        return optimizer._fused_factor() if self.prescaled else 1.0

    cpdef update(self, optimizer, double factor):
        """The optimizer's part after a kernel without the update inside: ``step()``,
        or ``_step_prescaled()`` for gradients weighted by ``factor`` != 1."""
        if factor != 1.0:
            optimizer._step_prescaled()
        else:
            optimizer.step()

    cdef inline bint applies(self, model, loss, optimizer):
        """Whether this step computes ``loss`` and ``optimizer``'s update for
        ``model`` as they are now (the reduction and the state buffers unchanged;
        an optimizer stepped after the kernel: its buffers still fit the parameters,
        so that its step() cannot fail after the kernel wrote the gradients)."""
        if loss is not self.loss or optimizer is not self.optimizer:
            return False
        if loss.reduction != self.reduction:
            return False
        if self.has_dropout and model.training:
            return False
        if self.state:
            buffers = optimizer.state
            for name, buf in zip(self.state_names, self.state):
                if buffers.get(name) is not buf:
                    return False
        elif not self.fused_update:
            return buffers_fit(optimizer.state, self.engine)
        return True

    def current(self, optimizer_buffers):
        """Whether the plan still points at the optimizer's buffers (none switched on or
        replaced since): ``optimizer_buffers`` is ``optimizer.buffers()``."""
        if not self.fused_update:
            return True
        return len(optimizer_buffers) == len(self.state) and all(
            a is b for a, b in zip(optimizer_buffers, self.state))


cdef bint buffers_fit(object state, Engine e):
    """Whether every buffer in the dict ``state`` is a writeable C-contiguous array
    of the parameters' length and dtype (checked on the array headers)."""
    cdef int typenum = cnp.NPY_FLOAT if e.single else cnp.NPY_DOUBLE
    if not isinstance(state, dict):
        return False
    for buf in (<dict> state).values():
        if matrix_data(buf, typenum, e.n_params, 0) == NULL or \
                not cnp.PyArray_ISWRITEABLE(<cnp.ndarray> buf):
            return False
    return True


def train_step(self, X, target, loss, optimizer, keep_grads=False):
    """One training step in one call: forward, loss, backward and ``optimizer``'s
    update; return the loss value.

    The same numbers as ``loss_and_grad(X, target, loss)`` followed by
    ``optimizer.step()``, computed by one fused kernel without the GIL for a
    built-in ``MSELoss``, ``CrossEntropyLoss``, ``BCEWithLogitsLoss`` or
    ``PoissonLoss`` (SGD and Adam update inside it; other optimizers step right
    after; custom losses, Loss subclasses that do not declare ``fused_kind`` and
    dropout in training mode take the two-call path; see ``bpcore.nn.fused``).

    ``grads`` afterwards: with ``keep_grads=True``, this step's gradients, exactly
    those ``loss_and_grad`` leaves (every entry written). With ``keep_grads=False``
    (the default), its contents are unspecified: the fused step may fold the
    update into the products and not write gradients it does not need (SGD does,
    in ways that depend on the batch size, the hyper-parameters, the CPU and the
    BLAS threads). ``keep_grads`` costs nothing with Adam; with SGD it gives up
    those folds (see docs/performance.md).

    When BLAS had more than one thread as the step was built, Adam's update runs on
    the calling thread and bpcore's helper thread (``bpcore.threads``), with the
    same results. No caches are left for ``backward`` or the per-node views.
    Bad input raises before anything changes.
    """
    if keep_grads is False:
        return _step(self, X, target, loss, optimizer, 0)
    if keep_grads is True or (isinstance(keep_grads, np.bool_)):
        return _step(self, X, target, loss, optimizer,
                     KEEP_GRADS_FLAG if keep_grads else 0)
    raise TypeError(f"keep_grads must be True or False; got {type(keep_grads).__name__}")


def guarded_step(self, X, target, loss, optimizer):
    """``fit``'s step: ``train_step(X, target, loss, optimizer, keep_grads=True)``,
    the update taken only when the loss and every gradient are finite and the update
    cannot overflow (src/_engine.pyx, guard_status); returns the loss value. None
    when the update was not taken (then nothing changed: parameters, optimizer state
    and step count are as before, ``grads`` holds this step's gradients) or when
    the step is not one fused kernel with the update inside (nothing ran): the
    caller then takes the two-call path, which raises or skips."""
    return _step(self, X, target, loss, optimizer, GUARD_FLAG | KEEP_GRADS_FLAG)


cdef inline object _step(self, X, target, loss, optimizer, int flags):
    """train_step's fast path with the engine's flags (KEEP_GRADS, GUARD)."""
    cdef FusedStep step = self._fused
    cdef bint guard = (flags & GUARD_FLAG) != 0
    cdef Busy busy
    cdef double factor = 1.0
    if step is not None and step.applies(self, loss, optimizer):
        if guard and not step.fused_update:
            return None
        if step.prescaled:
            factor = step.factor(optimizer)
        busy = step.busy
        busy.claim("train_step")         # with the GIL, before the kernel releases it
        try:
            value = step.engine.run_step(X, target, flags, factor)
            if value is not None:
                if self._cache is not None:  # the last forward's caches are overwritten
                    self._input = self._cache = self._grad_output = None
                if guard and step.engine.status != STATUS_TAKEN:
                    return None
                if not step.fused_update:
                    step.update(optimizer, factor)
                return value
        finally:
            busy.release()
    return self._train_step_general(X, target, loss, optimizer, flags)
