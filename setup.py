"""mindcore packaging: the Python package plus one native extension, mindcore._C, built by CMake + Ninja.

Environment: MINDCORE_SKIP_BUILD=1 (pure Python, no extension), MINDCORE_TARGET_DEVICE=auto|cpu|cuda,
MINDCORE_CUDA_ARCHS (default "90"), MINDCORE_BUILD_TYPE (default Release), MAX_JOBS.
All build decisions live in CMakeLists.txt; this file only hands it the paths it cannot find itself.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

VERSION = "0.1.0"
ROOT = Path(__file__).resolve().parent


def _tool(name):
    """Prefer the pip-installed cmake/ninja (build requirements), then PATH."""
    try:
        mod = __import__(name)
        found = Path(getattr(mod, "CMAKE_BIN_DIR", None) or getattr(mod, "BIN_DIR")) / name
        if found.exists():
            return str(found)
    except (ImportError, AttributeError):
        pass
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: pip install {name} (or set MINDCORE_SKIP_BUILD=1)")
    return path


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        import pybind11
        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent  # in-tree for editable installs
        build_dir = Path(self.build_temp).resolve() / "cmake"
        build_dir.mkdir(parents=True, exist_ok=True)
        env = os.environ.get
        configure = [_tool("cmake"), str(ROOT), "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={_tool('ninja')}",
                     f"-DCMAKE_BUILD_TYPE={env('MINDCORE_BUILD_TYPE', 'Release')}",
                     f"-DPython_EXECUTABLE={sys.executable}", f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
                     f"-DMINDCORE_OUTPUT_DIR={out_dir}", f"-DMINDCORE_VERSION={VERSION}",
                     f"-DMINDCORE_TARGET_DEVICE={env('MINDCORE_TARGET_DEVICE', 'auto')}",
                     f"-DMINDCORE_CUDA_ARCHS={env('MINDCORE_CUDA_ARCHS', '90')}"]
        subprocess.run(configure, cwd=build_dir, check=True)
        jobs = ["-j", env("MAX_JOBS")] if env("MAX_JOBS") else []
        subprocess.run([_tool("cmake"), "--build", ".", *jobs], cwd=build_dir, check=True)


skip = os.environ.get("MINDCORE_SKIP_BUILD") == "1"
setup(
    name="mindcore",
    version=VERSION,
    packages=find_packages(include=["mindcore", "mindcore.*"]) + ["mindcore.kernels", "mindcore.configs"],
    # Our top-level kernels/ installs as mindcore.kernels (a PyPI package named `kernels` exists).
    package_dir={"mindcore.kernels": "kernels"},
    package_data={"mindcore.configs": ["*.yaml"]},
    ext_modules=[] if skip else [Extension("mindcore._C", sources=[])],
    cmdclass={} if skip else {"build_ext": CMakeBuild},
    python_requires=">=3.10",
)
