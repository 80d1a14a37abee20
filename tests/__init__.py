"""nnzoo's test suite, a regular package so that ``tests.conftest`` is this folder's conftest.

Without this file ``tests`` would be a namespace package, and any installed distribution that ships a
top-level ``tests`` package (nfn 0.1.2 does) would win the import and break ``from tests.conftest import``.
"""
