"""Training: the split, cross-validation and search, the fit and its quality gates, the champion."""
