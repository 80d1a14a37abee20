"""The package version, in a module of its own so that any module can read it without importing the
package facade (:mod:`nnzoo` lazily re-exports the high-level API, which itself needs the version)."""

__version__ = "0.1.0"
