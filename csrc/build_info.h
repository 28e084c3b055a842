// Facts only the torch-facing sources know, for the pybind11 module (which includes no torch header).
#pragma once
#include <string>

namespace mindcore {
const char* parallel_backend();  // torch's intra-op backend the CPU row kernels run on
const char* cpu_isa();           // which clone of the CPU row kernels this machine dispatches to
std::string cpu_lowp_gemm();     // per 16-bit dtype: which CPU scheme runs (16-bit GEMMs or fp32 ones)
}  // namespace mindcore
