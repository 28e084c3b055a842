"""mindcore's Triton kernels, installed as ``mindcore.kernels`` (setup.py's package_dir).

Hugging Face publishes a PyPI package named ``kernels``, which transformers imports when it is
installed. ``python -m ...`` from the repository root puts this folder first on sys.path as the
top-level ``kernels``: imported under that name, it hands over to the installed package.
"""
if __name__ == "kernels":
    import importlib.machinery
    import importlib.util
    import os
    import sys

    _root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _spec = importlib.machinery.PathFinder.find_spec(
        "kernels", [p for p in sys.path if os.path.abspath(p or os.curdir) != _root])
    if _spec is not None:
        _module = importlib.util.module_from_spec(_spec)
        sys.modules["kernels"] = _module  # `import kernels` returns what sys.modules holds after this file
        _spec.loader.exec_module(_module)
