/* The Cython modules' view of bpcore's C kernels (_kernels.h), and of SciPy's BLAS.
 *
 * The kernels are compiled once, into bpcore._kernels, which exports their table in
 * the capsule bpcore._kernels._table. Each module that calls them runs
 * bp_import_kernels() once at import (before any kernel call); a kernel's name
 * (bp_adam_f32, ...) then calls through the table. The same call loads the four BLAS
 * routines of SciPy's scipy.linalg.cython_blas that _blas.pxd calls (bp_sgemm, ...),
 * from the capsules SciPy exports, as a cimport of them would at run time: building
 * bpcore needs no SciPy. Included after Python.h.
 */
#ifndef BPCORE_LOOPS_H
#define BPCORE_LOOPS_H

#include "_kernels.h"

static const bp_kernel_table *bp_kernels = NULL;
static long bp_small_limit = 0;
static long bp_fused_limit = 0;

/* SciPy's BLAS (LP64: int dimensions), Fortran calling convention */
typedef void (*bp_gemm_f32_fn)(char *, char *, int *, int *, int *, float *, float *, int *,
                               float *, int *, float *, float *, int *);
typedef void (*bp_gemm_f64_fn)(char *, char *, int *, int *, int *, double *, double *,
                               int *, double *, int *, double *, double *, int *);
typedef void (*bp_axpy_f32_fn)(int *, float *, float *, int *, float *, int *);
typedef void (*bp_axpy_f64_fn)(int *, double *, double *, int *, double *, int *);
static bp_gemm_f32_fn bp_sgemm;
static bp_gemm_f64_fn bp_dgemm;
static bp_axpy_f32_fn bp_saxpy;
static bp_axpy_f64_fn bp_daxpy;

/* the function `name` of the dict capi (a Cython module's __pyx_capi__), or NULL with
 * ImportError set */
static void *bp_capi_function(PyObject *capi, const char *name) {
    PyObject *capsule = PyDict_GetItemString(capi, name);    /* borrowed */
    if (!capsule || !PyCapsule_CheckExact(capsule)) {
        PyErr_Format(PyExc_ImportError, "scipy.linalg.cython_blas does not export %s", name);
        return NULL;
    }
    return PyCapsule_GetPointer(capsule, PyCapsule_GetName(capsule));
}

/* 0 once SciPy's BLAS routines are loaded; -1 with an error set */
static int bp_import_blas(void) {
    PyObject *module, *capi;
    module = PyImport_ImportModule("scipy.linalg.cython_blas");
    if (!module) return -1;
    capi = PyObject_GetAttrString(module, "__pyx_capi__");
    Py_DECREF(module);
    if (!capi) return -1;
    if (!PyDict_Check(capi)) {
        Py_DECREF(capi);
        PyErr_SetString(PyExc_ImportError, "scipy.linalg.cython_blas.__pyx_capi__ is not a dict");
        return -1;
    }
    bp_sgemm = (bp_gemm_f32_fn) bp_capi_function(capi, "sgemm");
    bp_dgemm = bp_sgemm ? (bp_gemm_f64_fn) bp_capi_function(capi, "dgemm") : NULL;
    bp_saxpy = bp_dgemm ? (bp_axpy_f32_fn) bp_capi_function(capi, "saxpy") : NULL;
    bp_daxpy = bp_saxpy ? (bp_axpy_f64_fn) bp_capi_function(capi, "daxpy") : NULL;
    Py_DECREF(capi);
    return bp_daxpy ? 0 : -1;
}

/* 0 once the table (and SciPy's BLAS) is loaded; -1 with ImportError (or the
 * import's own error) set */
static int bp_import_kernels(void) {
    const bp_kernel_table *table;
    PyObject *module, *capsule;
    if (bp_kernels) return 0;
    if (bp_import_blas() < 0) return -1;
    /* the module itself, not PyCapsule_Import's walk from the package: this runs
     * while bpcore/__init__.py is still importing */
    module = PyImport_ImportModule("bpcore._kernels");
    if (!module) return -1;
    capsule = PyObject_GetAttrString(module, "_table");
    Py_DECREF(module);
    if (!capsule) return -1;
    table = (const bp_kernel_table *) PyCapsule_GetPointer(capsule, "bpcore._kernels._table");
    Py_DECREF(capsule);
    if (!table) return -1;
    if (table->version != BP_KERNEL_API_VERSION || table->size != (int) sizeof(bp_kernel_table)) {
        PyErr_Format(PyExc_ImportError,
                     "bpcore._kernels has kernel table version %d (%d bytes), this module "
                     "expects version %d (%d bytes): rebuild bpcore", table->version,
                     table->size, BP_KERNEL_API_VERSION, (int) sizeof(bp_kernel_table));
        return -1;
    }
    bp_small_limit = table->small_work_limit();
    bp_fused_limit = table->fused_work_limit();
    bp_kernels = table;
    return 0;
}

#define bp_small_work_limit() (bp_small_limit)
#define bp_fused_work_limit() (bp_fused_limit)
#define bp_unit_mse_fits_f32(k) bp_unit_mse_fits((k), (long) sizeof(float))
#define bp_unit_mse_fits_f64(k) bp_unit_mse_fits((k), (long) sizeof(double))
#define bp_pool_helper_chunks() (bp_kernels->pool_helper_chunks())
#define bp_pool_helper_on_turn() (bp_kernels->pool_helper_on_turn())

#define bp_bias_activation_f32 (bp_kernels->bias_activation_f32)
#define bp_bias_activation_f64 (bp_kernels->bias_activation_f64)
#define bp_delta_f32 (bp_kernels->delta_f32)
#define bp_delta_f64 (bp_kernels->delta_f64)
#define bp_all_finite_f32 (bp_kernels->all_finite_f32)
#define bp_all_finite_f64 (bp_kernels->all_finite_f64)
#define bp_transpose_f32 (bp_kernels->transpose_f32)
#define bp_transpose_f64 (bp_kernels->transpose_f64)
#define bp_sgd_f32 (bp_kernels->sgd_f32)
#define bp_sgd_f64 (bp_kernels->sgd_f64)
#define bp_outer_sgd_f32 (bp_kernels->outer_sgd_f32)
#define bp_outer_sgd_f64 (bp_kernels->outer_sgd_f64)
#define bp_adam_f32 (bp_kernels->adam_f32)
#define bp_adam_f64 (bp_kernels->adam_f64)
#define bp_small_gemm_f32 (bp_kernels->small_gemm_f32)
#define bp_small_gemm_f64 (bp_kernels->small_gemm_f64)
#define bp_small_dense_forward_f32 (bp_kernels->small_dense_forward_f32)
#define bp_small_dense_forward_f64 (bp_kernels->small_dense_forward_f64)
#define bp_small_delta_back_f32 (bp_kernels->small_delta_back_f32)
#define bp_small_delta_back_f64 (bp_kernels->small_delta_back_f64)
#define bp_unit_mse_f32 (bp_kernels->unit_mse_f32)
#define bp_unit_mse_f64 (bp_kernels->unit_mse_f64)
#define bp_abs_sum_f32 (bp_kernels->abs_sum_f32)
#define bp_abs_sum_f64 (bp_kernels->abs_sum_f64)
#define bp_adam_shared_f32 (bp_kernels->adam_shared_f32)
#define bp_adam_shared_f64 (bp_kernels->adam_shared_f64)
#define bp_sgd_shared_f32 (bp_kernels->sgd_shared_f32)
#define bp_sgd_shared_f64 (bp_kernels->sgd_shared_f64)
#define bp_exp_nonpositive_f32 (bp_kernels->exp_nonpositive_f32)
#define bp_exp_nonpositive_f64 (bp_kernels->exp_nonpositive_f64)
#define bp_softplus_neg_abs_f32 (bp_kernels->softplus_neg_abs_f32)
#define bp_softplus_neg_abs_f64 (bp_kernels->softplus_neg_abs_f64)
#define bp_sigmoid_array_f32 (bp_kernels->sigmoid_array_f32)
#define bp_sigmoid_array_f64 (bp_kernels->sigmoid_array_f64)

#endif
