"""The image tests' inputs, a fixture (a plugin of tests/conftest.py: used by name, never imported).

The model's wheel, its dependency wheels for CPython 3.11 on x86_64 (fetched once per module), and a
tiny base both as an OCI layout and as a `docker save` archive.
"""

from __future__ import annotations

from typing import Any

import pytest

from mlpack.artifacts.image import ImageTarget, download_dependencies, image_pins
from mlpack.artifacts.oci_base import digest_of
from tests.helpers.oci_layouts import base_config, tiny_base_layer, write_archive_base, write_oci_base


@pytest.fixture(scope="module")
def inputs(built_model: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The model's wheel, its dependency wheels for 3.11 (fetched once), and a tiny base both ways."""
    root = tmp_path_factory.mktemp("oci-inputs")
    wheel = built_model.artifacts["wheel"]
    pins = image_pins(built_model.metadata["versions"]["onnxruntime"])
    download_dependencies(wheel, root / "deps", ImageTarget("3.11", "x86_64"), pins=pins)
    layer = tiny_base_layer(root)
    config = base_config([digest_of(layer)])
    return {
        "wheel": wheel,
        "onnx": built_model.artifacts["onnx"],
        "metadata": built_model.metadata,
        "deps": root / "deps",
        "oci": write_oci_base(root / "base.oci", layer, config),
        "archive": write_archive_base(root / "base.tar", layer, config),
    }
