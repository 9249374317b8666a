/* The Cython modules' view of bpcore's C kernels (_kernels.h).
 *
 * The kernels are compiled once, into bpcore._kernels, which exports their table in
 * the capsule bpcore._kernels._table. Each module that calls them runs
 * bp_import_kernels() once at import (before any kernel call); a kernel's name
 * (bp_adam_f32, ...) then calls through the table. Included after Python.h.
 */
#ifndef BPCORE_LOOPS_H
#define BPCORE_LOOPS_H

#include "_kernels.h"

static const bp_kernel_table *bp_kernels = NULL;
static long bp_small_limit = 0;

/* 0 once the table is loaded; -1 with ImportError (or the import's own error) set */
static int bp_import_kernels(void) {
    const bp_kernel_table *table;
    PyObject *module, *capsule;
    if (bp_kernels) return 0;
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
    bp_kernels = table;
    return 0;
}

#define bp_small_work_limit() (bp_small_limit)
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

#endif
