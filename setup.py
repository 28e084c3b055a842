"""mindcore packaging. The native extension build is added by the CMake driver (see CMakeLists.txt)."""
from setuptools import find_packages, setup

packages = find_packages(include=["mindcore", "mindcore.*"]) + ["mindcore.kernels"]

setup(
    name="mindcore",
    version="0.1.0",
    packages=packages,
    # Our top-level kernels/ installs as mindcore.kernels (a PyPI package named `kernels` exists).
    package_dir={"mindcore.kernels": "kernels"},
    python_requires=">=3.10",
)
