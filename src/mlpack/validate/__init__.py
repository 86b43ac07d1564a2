"""Loaded documents checked and turned into a `Dataset`: what training reads (dataset.py), and how
dirty values are read or set aside at load (cleaning.py)."""

from mlpack.validate.dataset import Dataset, ValidationReport, fingerprint, validate

__all__ = ["Dataset", "ValidationReport", "fingerprint", "validate"]
