// The importable module frsengine._C. Importing it loads the shared library, whose static
// initialisers register the native ops with the dispatcher; the module itself only carries the
// build stamp the Python side checks (frsengine/ops/_ext.py) and whether CUDA kernels are inside.
#include <Python.h>

#ifndef FRSENGINE_BUILD_STAMP
#error "FRSENGINE_BUILD_STAMP must be defined by the build (setup.py)"
#endif
#ifndef FRSENGINE_WITH_CUDA
#define FRSENGINE_WITH_CUDA 0
#endif

static struct PyModuleDef frsengine_module = {PyModuleDef_HEAD_INIT, "_C",
                                              "frsengine native kernels", -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* m = PyModule_Create(&frsengine_module);
  if (m == nullptr) return nullptr;
  if (PyModule_AddStringConstant(m, "BUILD_STAMP", FRSENGINE_BUILD_STAMP) < 0 ||
      PyModule_AddIntConstant(m, "WITH_CUDA", FRSENGINE_WITH_CUDA) < 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
