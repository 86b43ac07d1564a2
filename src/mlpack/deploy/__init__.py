"""Manifests for running a built model on other platforms (Kubernetes, KServe)."""
