"""A retrain's image reuses what is unchanged (artifacts/oci_memo.py, oci_files.py) and still refuses what changed.

The base's and the dependency layer's blobs are hashed once while their files are unchanged, linked
into the layout from the cache and copied into the archive in the kernel: none of that may let a
changed byte through, and the archive stays byte for byte what tarfile writes.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from mlpack.artifacts.oci import write_layout
from mlpack.artifacts.oci_base import digest_of, load_base
from mlpack.artifacts.oci_files import write_archive
from mlpack.artifacts.oci_layer import entries, tar_info, write_tar
from mlpack.config import ImageSection
from mlpack.errors import ConfigError
from tests.helpers.oci_layouts import (
    EPOCH,
    base_config,
    image_from,
    tiny_base_layer,
    write_archive_base,
    write_oci_base,
)


def flip_in_place(path: Path, offset: int) -> None:
    """One byte changed through the file's own inode (as an editor or a disk error would), its size kept."""
    with path.open("r+b") as stream:
        stream.seek(offset)
        byte = stream.read(1)
        stream.seek(offset)
        stream.write(bytes([byte[0] ^ 1]))


def test_the_archive_is_byte_for_byte_what_tarfile_writes(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "blobs" / "sha256" / ("a" * 64)).write_bytes(b"x" * 1000)  # a name past 100 characters: GNU longname
    (root / "blobs" / "sha256" / "empty").write_bytes(b"")
    (root / "index.json").write_bytes(b"{}")
    (root / "run").write_bytes(b"#!/bin/sh\n")
    (root / "run").chmod(0o755)
    files = entries(root)
    expected = io.BytesIO()
    write_tar(expected, files, EPOCH)
    archive = tmp_path / "archive.tar"
    write_archive(archive, [(name, tar_info(name, path, EPOCH), path) for name, path in files])
    assert archive.read_bytes() == expected.getvalue()
    with tarfile.open(archive) as read:
        assert read.extractfile(f"blobs/sha256/{'a' * 64}").read() == b"x" * 1000  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["oci", "docker-archive"])
def test_a_base_changed_after_it_was_checked_once_is_refused(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The remembered check is of the file as it was: a byte changed later is hashed again and refused."""
    monkeypatch.setenv("MLPACK_CACHE_DIR", str(tmp_path / "cache"))
    layer = tiny_base_layer(tmp_path)
    config = base_config([digest_of(layer)])
    if kind == "oci":
        where = write_oci_base(tmp_path / "base.oci", layer, config)
        victim, offset = where / "blobs" / "sha256" / digest_of(layer)[7:], 600
    else:
        where = write_archive_base(tmp_path / "base.tar", layer, config)
        with tarfile.open(where) as archive:
            victim, offset = where, archive.getmember("l/layer.tar").offset_data + 600
    assert load_base(f"{kind}:{where}").layers[0].digest == digest_of(layer)
    assert load_base(f"{kind}:{where}").layers[0].digest == digest_of(layer)  # remembered: the same answer
    flip_in_place(victim, offset)
    with pytest.raises(ConfigError, match="does not match its (digest|diff_id)"):
        load_base(f"{kind}:{where}")


def test_a_layer_changed_through_a_layouts_link_is_not_built_on(
    inputs: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The layout links its blobs from the cache; a byte changed through the layout is caught and mended."""
    monkeypatch.setenv("MLPACK_CACHE_DIR", str(tmp_path / "cache"))
    section = ImageSection(base=f"docker-archive:{inputs['archive']}", python="3.11")

    def build(name: str) -> Any:
        (tmp_path / name).mkdir()
        return image_from(tmp_path / name, inputs, section)

    first = build("one")
    blobs = first.layout / "blobs" / "sha256"
    base_digest = load_base(f"docker-archive:{inputs['archive']}").layers[0].digest
    for digest in (base_digest, first.dependency_layer.digest):
        flip_in_place(blobs / digest[7:], 600)
    second = build("two")
    assert second.digest == first.digest and not second.dependency_cached  # the same image, its layer remade
    for digest in (base_digest, second.dependency_layer.digest):
        assert (
            "sha256:" + hashlib.sha256((second.layout / "blobs" / "sha256" / digest[7:]).read_bytes()).hexdigest()
            == digest
        )


def test_a_base_that_repeats_a_layer_gives_a_layout_with_that_blob_once(tmp_path: Path) -> None:
    # Old images name the empty layer (and BuildKit an unchanged one) twice in a manifest: one blob.
    layer = tiny_base_layer(tmp_path)
    diff_id = digest_of(layer)
    base = write_oci_base(tmp_path / "base.oci", layer, base_config([diff_id, diff_id]), repeat=2)
    loaded = load_base(f"oci:{base}")
    assert [blob.digest for blob in loaded.layers] == [diff_id, diff_id]
    config = base_config([diff_id, diff_id])
    write_layout(tmp_path / "out.oci", loaded, [], config, "tiny:1")
    blob = tmp_path / "out.oci" / "blobs" / "sha256" / diff_id.partition(":")[2]
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == diff_id.partition(":")[2]
    manifest = json.loads((tmp_path / "out.oci" / "manifest.json").read_text())[0]
    assert manifest["Layers"] == [f"blobs/sha256/{diff_id.partition(':')[2]}"] * 2
