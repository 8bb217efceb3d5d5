"""Backends for tests, not for training: nothing in the engine imports this package.

:mod:`~xpgrad.backends.testing.standin` is a GPU-free stand-in for a CUDA device (NumPy memory,
CuPy's strictness about host conversion and mixing), which ``python -m pytest --device=standin``
installs to run the whole suite "on the GPU".
"""
