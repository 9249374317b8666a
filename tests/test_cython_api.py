"""bpcore's C-level API for other Cython extensions (bpcore/include/bpcore/kernels.pxd,
found through bpcore.get_include()): a tiny third-party extension is compiled against
the bpcore that the tests import (the installed wheel, in CI's wheel run), and its
calls of the nogil kernels are checked against bpcore's own Python API (bp.Adam and
bp.SGD bit for bit, a Dense layer's forward) and a NumPy reference."""
import os
import shutil
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

import bpcore as bp
from bpcore.nn.layers import ACTIVATIONS

CONSUMER = '''
from bpcore.kernels cimport (ACT_IDENTITY, ACT_RELU, ACT_SIGMOID, ACT_TANH, adam_f32,
                             adam_f64, dense_forward_f32, dense_forward_f64, sgd_f64)


def codes():
    return ACT_IDENTITY, ACT_SIGMOID, ACT_TANH, ACT_RELU


def adam64(double[::1] p, const double[::1] g, double[::1] m, double[::1] v, double lr,
           double beta1, double beta2, double eps, double weight_decay, long step):
    with nogil:
        adam_f64(p.shape[0], &p[0], &g[0], &m[0], &v[0], lr, beta1, beta2, eps,
                 weight_decay, step)


def adam32(float[::1] p, const float[::1] g, float[::1] m, float[::1] v, double lr,
           double beta1, double beta2, double eps, double weight_decay, long step):
    with nogil:
        adam_f32(p.shape[0], &p[0], &g[0], &m[0], &v[0], lr, beta1, beta2, eps,
                 weight_decay, step)


def sgd64(double[::1] p, const double[::1] g, double[::1] velocity, double lr,
          double momentum, double weight_decay, bint nesterov):
    with nogil:
        sgd_f64(p.shape[0], &p[0], &g[0], &velocity[0], lr, momentum, weight_decay,
                nesterov)


def forward64(const double[:, ::1] X, const double[:, ::1] W, const double[::1] b,
              double[:, ::1] A, double[:, ::1] D, int act):
    with nogil:
        dense_forward_f64(X.shape[0], X.shape[1], W.shape[1], &X[0, 0], &W[0, 0], &b[0],
                          &A[0, 0], &D[0, 0], act)


def forward32(const float[:, ::1] X, const float[:, ::1] W, const float[::1] b,
              float[:, ::1] A, int act):
    with nogil:
        dense_forward_f32(X.shape[0], X.shape[1], W.shape[1], &X[0, 0], &W[0, 0], &b[0],
                          &A[0, 0], NULL, act)
'''

SETUP = '''
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(ext_modules=cythonize([Extension("bpcore_consumer", ["bpcore_consumer.pyx"])],
                            include_path=[INCLUDE],
                            compiler_directives={"language_level": 3}, quiet=True),
      script_args=["build_ext", "--inplace"])
'''


C_CONSUMER = r'''
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "bpcore/kernels.h"

static bpcore_kernels K;

/* adam64(params, grads, exp_avg, exp_avg_sq addresses, n, lr, beta1, beta2, eps,
 * weight_decay, step): the arrays come as their addresses (numpy's ctypes.data) */
static PyObject *adam64(PyObject *self, PyObject *args) {
    Py_ssize_t p, g, m, v, n;
    double lr, b1, b2, eps, wd;
    long step;
    if (!PyArg_ParseTuple(args, "nnnnndddddl", &p, &g, &m, &v, &n, &lr, &b1, &b2, &eps,
                          &wd, &step))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    K.adam_f64((long) n, (double *) p, (const double *) g, (double *) m, (double *) v, lr,
               b1, b2, eps, wd, step);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *tanh_code(PyObject *self, PyObject *args) {
    return PyLong_FromLong(BPCORE_ACT_TANH);
}

static PyMethodDef methods[] = {
    {"adam64", adam64, METH_VARARGS, NULL},
    {"tanh_code", tanh_code, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "bpcore_c_consumer", NULL, -1,
                                    methods};

PyMODINIT_FUNC PyInit_bpcore_c_consumer(void) {
    if (bpcore_kernels_import(&K) < 0) return NULL;
    return PyModule_Create(&module);
}
'''

C_SETUP = '''
from setuptools import Extension, setup

setup(ext_modules=[Extension("bpcore_c_consumer", ["bpcore_c_consumer.c"],
                             include_dirs=[INCLUDE])],
      script_args=["build_ext", "--inplace"])
'''


def _build(where, module, sources):
    """Build `module` from `sources` ({file name: text}) in `where` and import it."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler!r}) to build a test extension with")
    for name, text in sources.items():
        (where / name).write_text(text)
    # bpcore.get_include() of the bpcore under test, handed to the build script, which
    # does not import bpcore itself; the compiler is not under test, so under the
    # sanitizer run (a preloaded ASan runtime) it runs without it. The extension is
    # imported here, under it.
    for name, text in sources.items():
        if name == "setup.py":
            (where / name).write_text(f"INCLUDE = {bp.get_include()!r}\n" + text)
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    result = subprocess.run([sys.executable, "setup.py"], cwd=where, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sys.path.insert(0, str(where))
    try:
        return __import__(module)
    finally:
        sys.path.remove(str(where))


@pytest.fixture(scope="module")
def consumer(tmp_path_factory):
    pytest.importorskip("Cython")
    pytest.importorskip("setuptools")
    return _build(tmp_path_factory.mktemp("consumer"), "bpcore_consumer",
                  {"bpcore_consumer.pyx": CONSUMER, "setup.py": SETUP})


def test_a_c_extension_calls_adam_through_the_header(tmp_path):
    # bpcore/kernels.h: the same kernels for C, fetched from the module at import
    pytest.importorskip("setuptools")
    c_consumer = _build(tmp_path, "bpcore_c_consumer",
                        {"bpcore_c_consumer.c": C_CONSUMER, "setup.py": C_SETUP})
    assert c_consumer.tanh_code() == ACTIVATIONS["tanh"][0]
    model = bp.Model([bp.Dense(3, 4, "tanh"), bp.Dense(4, 1)], seed=3)
    optimizer = bp.Adam(model, lr=0.02)
    params = model.params.copy()
    m, v = np.zeros_like(params), np.zeros_like(params)
    rng = np.random.default_rng(3)
    for step in range(1, 4):
        grads = rng.standard_normal(params.size)
        model.grads[...] = grads
        optimizer.step()
        c_consumer.adam64(params.ctypes.data, grads.ctypes.data, m.ctypes.data,
                          v.ctypes.data, params.size, 0.02, 0.9, 0.999, 1e-8, 0.0, step)
    np.testing.assert_array_equal(params, model.params)


def test_get_include_holds_the_declarations():
    path = os.path.join(bp.get_include(), "bpcore", "kernels.pxd")
    assert os.path.isfile(path)
    with open(path) as file:
        text = file.read()
    for name in ("adam_f32", "adam_f64", "sgd_f32", "sgd_f64", "dense_forward_f32",
                 "dense_forward_f64"):
        assert f"cdef void {name}(" in text
    # every declared function is exported by the compiled module
    import bpcore.kernels
    assert set(bpcore.kernels.__pyx_capi__) == {
        "adam_f32", "adam_f64", "sgd_f32", "sgd_f64", "dense_forward_f32",
        "dense_forward_f64"}


def test_the_activation_codes_are_bpcores(consumer):
    assert consumer.codes() == tuple(ACTIVATIONS[name][0]
                                     for name in ("identity", "sigmoid", "tanh", "relu"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_kernel_equals_bp_adam_bit_for_bit(consumer, dtype, weight_decay):
    model = bp.Model([bp.Dense(6, 9, "tanh"), bp.Dense(9, 3)], dtype=dtype, seed=0)
    optimizer = bp.Adam(model, lr=0.01, betas=(0.8, 0.99), eps=1e-7,
                        weight_decay=weight_decay)
    params = model.params.copy()
    m, v = np.zeros_like(params), np.zeros_like(params)
    kernel = consumer.adam32 if dtype == np.float32 else consumer.adam64
    rng = np.random.default_rng(0)
    for step in range(1, 6):
        grads = rng.standard_normal(params.size).astype(dtype)
        model.grads[...] = grads
        optimizer.step()
        kernel(params, grads, m, v, 0.01, 0.8, 0.99, 1e-7, weight_decay, step)
        np.testing.assert_array_equal(params, model.params)
    np.testing.assert_array_equal(m, optimizer.state["exp_avg"])
    np.testing.assert_array_equal(v, optimizer.state["exp_avg_sq"])


def test_sgd_kernel_equals_bp_sgd_bit_for_bit(consumer):
    model = bp.Model([bp.Dense(4, 5, "relu"), bp.Dense(5, 2)], seed=1)
    optimizer = bp.SGD(model, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.001)
    params, velocity = model.params.copy(), np.zeros_like(model.params)
    rng = np.random.default_rng(1)
    for _ in range(4):
        grads = rng.standard_normal(params.size)
        model.grads[...] = grads
        optimizer.step()
        consumer.sgd64(params, grads, velocity, 0.05, 0.9, 0.001, True)
    np.testing.assert_array_equal(params, model.params)


@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh", "relu"])
def test_dense_forward_kernel_matches_the_layer_and_numpy(consumer, activation):
    rng = np.random.default_rng(2)
    model = bp.Model([bp.Dense(5, 7, activation)], seed=2)
    layer = model.layers[0]
    X = rng.standard_normal((11, 5))
    A, D = np.empty((11, 7)), np.empty((11, 7))
    consumer.forward64(X, layer.W, layer.b, A, D, ACTIVATIONS[activation][0])
    z = X @ layer.W + layer.b
    reference = {"identity": z, "sigmoid": 1 / (1 + np.exp(-z)), "tanh": np.tanh(z),
                 "relu": np.maximum(z, 0)}[activation]
    derivative = {"identity": np.ones_like(z), "sigmoid": reference * (1 - reference),
                  "tanh": 1 - reference ** 2, "relu": (z > 0).astype(float)}[activation]
    np.testing.assert_allclose(A, reference, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(D, derivative, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(A, model.predict(X), rtol=1e-14, atol=1e-15)
    A32 = np.empty((11, 7), np.float32)
    consumer.forward32(X.astype(np.float32), layer.W.astype(np.float32),
                       layer.b.astype(np.float32), A32, ACTIVATIONS[activation][0])
    np.testing.assert_allclose(A32, reference, rtol=2e-6, atol=1e-6)
