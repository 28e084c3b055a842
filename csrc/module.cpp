// pybind11 side of mindcore._C: build facts only. The ops register themselves with the PyTorch
// dispatcher when the library loads (TORCH_LIBRARY in the op sources).
#include <pybind11/pybind11.h>

#include "build_info.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "mindcore native ops (registered as torch.ops.mindcore.*)";
  m.def("build_info", [] {
    py::dict d;
    d["version"] = MINDCORE_VERSION;
    d["build_type"] = MINDCORE_BUILD_TYPE;
    d["torch_version"] = MINDCORE_TORCH_VERSION;
    d["compiler"] = MINDCORE_COMPILER;
    d["cuda"] = static_cast<bool>(MINDCORE_WITH_CUDA);
    d["cuda_archs"] = MINDCORE_CUDA_ARCHS;
    d["torch_cuda"] = MINDCORE_TORCH_CUDA;
    d["parallel"] = mindcore::parallel_backend();
    d["cpu_isa"] = mindcore::cpu_isa();
    d["cpu_lowp_gemm"] = mindcore::cpu_lowp_gemm();  // read at call time: honours MINDCORE_CPU_LOWP_GEMM
    d["ops"] = py::make_tuple("perspective_cross_entropy");
    return d;
  }, "What this extension was built with: versions, CUDA archs, compiler, parallel backend.");
}
