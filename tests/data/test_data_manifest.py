"""Manifest schema and the repository's declared datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sigebench.data import ManifestError, list_manifests, load_manifest, manifest_dir

from ._helpers import sha256, write_manifest

REPO = Path(__file__).resolve().parents[2]
SHARED_EDITS = Path(os.environ.get("SIGE_DATA_MIRROR") or "/nonexistent") / "edits"  # the mirror CI sets


def test_manifest_dir_is_repo_datasets():
    assert manifest_dir() == REPO / "datasets"
    assert {"example_edits", "lsun_church_sdedit", "cityscapes_edit"} <= set(list_manifests())


def test_manifest_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGE_MANIFESTS", str(tmp_path))
    write_manifest(tmp_path, "mine", [{"path": "a", "url": "http://h/a", "sha256": sha256(b"")}])
    assert manifest_dir() == tmp_path
    assert list_manifests() == ["mine"]
    assert load_manifest("mine").items[0].urls == ("http://h/a",)


def test_example_edits_manifest():
    m = load_manifest("example_edits")
    assert m.root == "edits" and len(m.items) == 13
    it = m.item("engine/mask.npy")
    assert it.urls == ("https://raw.githubusercontent.com/lmxyy/sige/main/assets/mask.npy",)
    assert it.sha256 == "74ec3b3d8b879caef512222906da690f4042708fa8a1c1471438fcc7fe22d766"
    assert all(i.sha256 and i.size for i in m.items)
    if SHARED_EDITS.is_dir():
        for i in m.items:
            f = SHARED_EDITS / i.path
            assert f.stat().st_size == i.size, i.path
            assert sha256(f.read_bytes()) == i.sha256, i.path


def test_archive_manifests():
    church = load_manifest("lsun_church_sdedit").item("church_outdoor_sdedit.zip")
    assert church.md5 == "149d28096a94cfb48210e5950ffa613a" and church.archive == "zip"
    assert church.extract_to == "church_outdoor_sdedit"
    assert set(church.layout) == {"original/", "edited/", "gt/", "masks/"}
    city = load_manifest("cityscapes_edit").item("cityscapes-edit.zip")
    assert not city.verified and "copy" in city.checksum_note
    assert "meta.csv" in city.layout and "synthetic_instances/" in city.layout
    m = load_manifest("lsun_church_sdedit")
    assert m.find("church_outdoor_sdedit/original/000.png") == (church, "church_outdoor_sdedit/original/000.png")


GOOD = {"path": "a/b.bin", "url": "http://h/b", "sha256": "0" * 64}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sha256": None}, "declare sha256 or md5"),
        ({"sha256": None, "checksum": "none"}, "checksum_note"),
        ({"sha256": "abc"}, "not a valid hex digest"),
        ({"md5": "0" * 64}, "not a valid hex digest"),
        ({"path": "/etc/passwd"}, "relative path"),
        ({"path": "../x"}, "relative path"),
        ({"url": None}, "'url'"),
        ({"url": "rel/x"}, "base_url"),
        ({"sha265": "0" * 64}, "unknown key"),
        ({"size": -1}, "size"),
        ({"archive": "rar", "extract_to": "x"}, "unknown archive format"),
        ({"archive": "zip"}, "extract_to"),
        ({"extract_to": "x"}, "need 'archive'"),
        ({"checksum": "none", "checksum_note": "x"}, "contradicts"),
    ],
)
def test_schema_errors(tmp_path, change, message):
    item = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(ManifestError, match=message):
        load_manifest(write_manifest(tmp_path, "bad", [item]))


def test_name_must_match_file(tmp_path):
    p = write_manifest(tmp_path, "one", [GOOD])
    p.rename(tmp_path / "two.yaml")
    with pytest.raises(ManifestError, match="does not match"):
        load_manifest(tmp_path / "two.yaml")


def test_unknown_manifest_and_item(tmp_path):
    with pytest.raises(ManifestError, match="known: "):
        load_manifest("no_such_dataset")
    m = load_manifest(write_manifest(tmp_path, "ok", [GOOD]))
    assert m.root == "ok"
    with pytest.raises(ManifestError, match="a/b.bin"):
        m.item("zzz")
