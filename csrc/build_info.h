// Facts only the torch-facing sources know, for the pybind11 module (which includes no torch header).
#pragma once

namespace mindcore {
const char* parallel_backend();  // torch's intra-op backend the CPU row kernels run on
const char* cpu_isa();           // which clone of the CPU row kernels this machine dispatches to
}  // namespace mindcore
