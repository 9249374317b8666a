/* bpcore._kernels: the extension that holds the C kernels (src/_kernels.c).
 *
 * It exports their table in the capsule ``_table``, which the Cython modules load at
 * import (src/_loops.h), and describes how they were built (``build_info``).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_kernels.h"

static PyObject *bp_build_info(PyObject *self, PyObject *unused) {
    const bp_kernel_table *table = bp_kernels_get();
    (void) self;
    (void) unused;
    return Py_BuildValue("{s:s, s:s, s:s, s:l, s:l}", "kernels", table->path,
                         "target_clones", table->target_clones, "compiler",
                         table->compiler, "small_product_limit", table->small_work_limit(),
                         "fused_product_limit", table->fused_work_limit());
}

static PyMethodDef bp_methods[] = {
    {"build_info", bp_build_info, METH_NOARGS,
     "build_info()\n--\n\n"
     "How the kernels were built: a dict with 'kernels' ('vector' or 'portable'),\n"
     "'target_clones' (the instruction sets they were cloned for, comma-separated,\n"
     "'' when none), "
     "'compiler', 'small_product_limit' and 'fused_product_limit' (see\n"
     "bpcore.build_info)."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef bp_module = {
    PyModuleDef_HEAD_INIT, "bpcore._kernels",
    "bpcore's C kernels, compiled once: their table (the capsule _table) for the\n"
    "Cython modules, and how they were built (build_info).",
    -1, bp_methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC PyInit__kernels(void) {
    PyObject *module = PyModule_Create(&bp_module), *capsule;
    if (!module) return NULL;
    capsule = PyCapsule_New((void *) bp_kernels_get(), "bpcore._kernels._table", NULL);
    if (!capsule || PyModule_AddObject(module, "_table", capsule) < 0) {
        Py_XDECREF(capsule);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
