"""admlops.localfs.file_sha256: the one SHA-256 of a file, which the catalog, merge and the deploy backends use."""
import hashlib

import pytest

from admlops.localfs import file_sha256


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 17])
def test_file_sha256_is_the_digest_of_the_whole_content(tmp_path, size):
    """Read in 1 MiB chunks: at, below and past a chunk boundary the digest is that of every byte."""
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_sha256(path) == file_sha256(str(path)) == hashlib.sha256(data).hexdigest()


def test_catalog_merge_and_backends_use_it():
    from admlops import catalog
    from admlops.backends import base
    from admlops.components.convert import merge

    assert catalog.file_sha256 is file_sha256 and merge.file_sha256 is file_sha256 and base.file_sha256 is file_sha256
