"""Where application attachments are kept (R-POR-05): a small interface and its local-disk implementation.

`BlobStore` is what intake needs of object storage: store a chunk of an upload (idempotent), assemble the chunks
into the final object (returning its sha256), open the object. `LocalBlobStore` keeps them under a directory
(`INTAKE_BLOB_DIR`, default `$VAR_DIR/recommend-blobs` or a temporary directory). An S3-compatible store (multipart
upload: a chunk is a part) would implement the same three methods; it is not built yet.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol


class BlobStore(Protocol):
    def put_chunk(self, upload_id: str, n: int, data: bytes) -> None: ...
    def assemble(self, upload_id: str, chunks: int) -> str: ...
    def open(self, upload_id: str) -> BinaryIO: ...


def _safe(upload_id: str) -> str:
    if not upload_id.replace("-", "").isalnum():
        raise ValueError(f"not an upload id: {upload_id!r}")
    return upload_id


class LocalBlobStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, upload_id: str) -> Path:
        return self.root / "chunks" / _safe(upload_id)

    def put_chunk(self, upload_id: str, n: int, data: bytes) -> None:
        """Written to a temporary name, then renamed: a chunk is either whole or absent; rewriting it is harmless."""
        d = self._dir(upload_id)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f"{n:06d}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, d / f"{n:06d}")

    def assemble(self, upload_id: str, chunks: int) -> str:
        """Concatenates the chunks into the object (idempotent) and returns the object's sha256."""
        digest = hashlib.sha256()
        out = self.root / "objects" / _safe(upload_id)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            for n in range(chunks):
                data = (self._dir(upload_id) / f"{n:06d}").read_bytes()
                digest.update(data)
                f.write(data)
        os.replace(tmp, out)
        return digest.hexdigest()

    def open(self, upload_id: str) -> BinaryIO:
        return (self.root / "objects" / _safe(upload_id)).open("rb")


def from_settings(blob_dir: str, var_dir: str = "") -> BlobStore:
    """INTAKE_BLOB_DIR, else VAR_DIR/recommend-blobs, else a fresh temporary directory."""
    root = blob_dir
    if not root:
        root = str(Path(var_dir) / "recommend-blobs") if var_dir else tempfile.mkdtemp(prefix="recommend-blobs-")
    return LocalBlobStore(root)
