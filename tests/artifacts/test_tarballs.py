"""Reproducible tarballs: the same files give the same digest."""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

import pytest

from conveyor.artifacts import tarballs


def tree(root: Path, stamp: int) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "conveyor.yml").write_text("version: 1\n")
    (root / "bin" / "serve").write_text("#!/bin/sh\n")
    (root / "bin" / "serve").chmod(0o775)
    for path in root.rglob("*"):
        os.utime(path, (stamp, stamp))
    return root


def test_the_same_files_make_the_same_bytes_whatever_their_times(tmp_path: Path):
    one, two = tmp_path / "1.tar", tmp_path / "2.tar"
    assert tarballs.pack_tree(tree(tmp_path / "a", 1_000), one) == 2
    assert tarballs.pack_tree(tree(tmp_path / "b", 2_000_000), two) == 2
    assert hashlib.sha256(one.read_bytes()).digest() == hashlib.sha256(two.read_bytes()).digest()
    with tarfile.open(one) as tar:
        modes = {m.name: m.mode for m in tar.getmembers()}
    assert modes == {"bin/serve": 0o755, "conveyor.yml": 0o644}


def test_unpack_refuses_paths_out_of_the_destination(tmp_path: Path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../outside")
        tar.addfile(info)
    with pytest.raises(tarfile.OutsideDestinationError):
        tarballs.unpack(evil, tmp_path / "dest")
    assert not (tmp_path / "outside").exists()


def test_a_round_trip_keeps_files_and_counts_them(tmp_path: Path):
    archive = tarballs.temporary(tmp_path / "scratch")
    tarballs.pack_tree(tree(tmp_path / "src", 5), archive)
    assert tarballs.is_tarball(archive) and not tarballs.is_tarball(tmp_path / "src")
    assert tarballs.unpack(archive, tmp_path / "out") == 2
    assert (tmp_path / "out" / "bin" / "serve").read_text() == "#!/bin/sh\n"


@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz"])
def test_a_member_is_found_in_every_kind_of_tarball_without_reading_the_rest(
    tmp_path: Path, compression: str
):
    archive = tmp_path / f"a.tar.{compression}"
    (tmp_path / "big.bin").write_bytes(os.urandom(1 << 20))
    (tmp_path / "conveyor.yml").write_text("version: 1\n")
    with tarfile.open(archive, f"w:{compression}") as tar:
        tar.add(tmp_path / "conveyor.yml", arcname="./conveyor.yml")
        tar.add(tmp_path / "big.bin", arcname="big.bin")
    assert tarballs.read_mode(archive) == f"r:{compression}"
    found = tarballs.find_member(archive, "conveyor.yml", 1 << 20, 5.0)
    assert found is not None and found[1] == b"version: 1\n"
    assert tarballs.find_member(archive, "missing.yml", 4 << 20, 5.0) is None
    # Past the byte bound, the scan stops and says how far it read.
    with pytest.raises(tarballs.ScanLimit, match=r"no missing\.yml in the first"):
        tarballs.find_member(archive, "missing.yml", 1000, 5.0)


def test_what_is_not_a_tarball_is_told_from_its_first_bytes(tmp_path: Path):
    zeros = tmp_path / "zeros"
    zeros.write_bytes(bytes(1 << 20))
    assert tarballs.read_mode(zeros) is None and not tarballs.is_tarball(zeros)
    assert tarballs.read_mode(tmp_path / "missing") is None
    with pytest.raises(tarfile.ReadError, match="not a tar archive"):
        tarballs.find_member(zeros, "conveyor.yml", 1 << 20, 5.0)
