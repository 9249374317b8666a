/* bpcore's stable kernels for C extensions: the functions that bpcore/kernels.pxd
 * declares for Cython, with the same arguments, meaning and promises (no GIL needed,
 * nothing allocated, nothing raised, arguments trusted). They live in the compiled
 * module bpcore.kernels; bpcore_kernels_import() fetches them from its __pyx_capi__
 * at run time, so an extension needs this header (on the include path:
 * bpcore.get_include()) and Python's, and does not link against bpcore.
 *
 *     #include "bpcore/kernels.h"
 *     static bpcore_kernels K;
 *     ... in the module's init, with the GIL held:
 *     if (bpcore_kernels_import(&K) < 0) return NULL;
 *     ... anywhere after, with or without the GIL:
 *     K.adam_f64(n, params, grads, exp_avg, exp_avg_sq, 1e-3, 0.9, 0.999, 1e-8, 0.0, step);
 *
 * Use the header of the bpcore version that is installed: the table is looked up by
 * name, and a function whose arguments changed is a breaking change (CHANGELOG). */
#ifndef BPCORE_KERNELS_H
#define BPCORE_KERNELS_H

#include <Python.h>

/* activation codes of dense_forward_*: the numbering of bpcore.nn.layers.ACTIVATIONS */
enum { BPCORE_ACT_IDENTITY = 0, BPCORE_ACT_SIGMOID = 1, BPCORE_ACT_TANH = 2,
       BPCORE_ACT_RELU = 3 };

typedef struct {
    void (*adam_f32)(long n, float *params, const float *grads, float *exp_avg,
                     float *exp_avg_sq, double lr, double beta1, double beta2, double eps,
                     double weight_decay, long step);
    void (*adam_f64)(long n, double *params, const double *grads, double *exp_avg,
                     double *exp_avg_sq, double lr, double beta1, double beta2, double eps,
                     double weight_decay, long step);
    void (*sgd_f32)(long n, float *params, const float *grads, float *velocity, double lr,
                    double momentum, double weight_decay, int nesterov);
    void (*sgd_f64)(long n, double *params, const double *grads, double *velocity,
                    double lr, double momentum, double weight_decay, int nesterov);
    void (*dense_forward_f32)(long n, long n_in, long n_out, const float *X,
                              const float *W, const float *b, float *A, float *D,
                              int activation);
    void (*dense_forward_f64)(long n, long n_in, long n_out, const double *X,
                              const double *W, const double *b, double *A, double *D,
                              int activation);
} bpcore_kernels;

/* Fill *k from the module bpcore.kernels. 0 on success; -1 with a Python exception
 * set (ImportError where bpcore or one of the functions is missing). */
static int bpcore_kernels_import(bpcore_kernels *k) {
    static const char *const names[] = {"adam_f32", "adam_f64", "sgd_f32", "sgd_f64",
                                        "dense_forward_f32", "dense_forward_f64"};
    void *pointers[sizeof names / sizeof names[0]];
    PyObject *module = PyImport_ImportModule("bpcore.kernels");
    if (module == NULL) return -1;
    PyObject *capi = PyObject_GetAttrString(module, "__pyx_capi__");
    Py_DECREF(module);
    if (capi == NULL) return -1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        PyObject *capsule = PyDict_GetItemString(capi, names[i]);   /* borrowed */
        if (capsule == NULL || !PyCapsule_CheckExact(capsule)) {
            Py_DECREF(capi);
            PyErr_Format(PyExc_ImportError, "bpcore.kernels does not export %s: "
                         "this header is from another version of bpcore", names[i]);
            return -1;
        }
        pointers[i] = PyCapsule_GetPointer(capsule, PyCapsule_GetName(capsule));
        if (pointers[i] == NULL) {
            Py_DECREF(capi);
            return -1;
        }
    }
    Py_DECREF(capi);
    /* (function pointers travel as void * in the capsules, as Cython stores them) */
    *(void **) &k->adam_f32 = pointers[0];
    *(void **) &k->adam_f64 = pointers[1];
    *(void **) &k->sgd_f32 = pointers[2];
    *(void **) &k->sgd_f64 = pointers[3];
    *(void **) &k->dense_forward_f32 = pointers[4];
    *(void **) &k->dense_forward_f64 = pointers[5];
    return 0;
}

#endif
