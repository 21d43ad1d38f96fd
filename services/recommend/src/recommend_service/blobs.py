"""Where application attachments are kept (R-POR-05): a small interface and its local-disk implementation.

`BlobStore` is what intake needs of object storage: store a chunk of an upload (idempotent), assemble the chunks
into the final object (returning its sha256), open the object. `LocalBlobStore` keeps them under a directory
(`INTAKE_BLOB_DIR`, default `$VAR_DIR/recommend-blobs` or a temporary directory); `S3BlobStore` keeps them in a bucket
of an S3-compatible object store (`BLOB_STORE=s3`, for clusters: every replica sees every chunk).

The methods are blocking; the handlers call them through `run_in_threadpool`, so the event loop is never held.
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
import threading
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


class S3BlobStore:
    """Chunks and objects in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO, ...).

    S3's way to resume an upload is a multipart upload: each part sent on its own, in any order, again if need be,
    the object made by CompleteMultipartUpload. But every part except the last must hold at least 5 MiB, and intake's
    chunks are 1 MiB by default (a client may choose 1 KiB to 8 MiB). So:
    - a chunk of at least `min_part` bytes is a part of the upload's multipart upload (part number n + 1), which is
      found again by listing the bucket's open multipart uploads for the object's key: a new store instance (a
      restarted or another replica) continues the same S3 upload id;
    - a smaller chunk is an object of its own (`chunks/<upload>/<n>`), written whole or not at all;
    - assemble: when all the chunks but the last are parts, the last (if small) is sent as the last part and the
      multipart upload completed; otherwise (small chunks) the chunks are read back in order and sent as parts of at
      least `min_part` bytes (one PutObject under that size). The chunk objects are then deleted.
    Checksums: every write carries Content-MD5 (the server refuses bytes damaged on the way), and assemble returns the
    sha256 of the object as READ BACK from the bucket, which intake compares with the sha256 the client declared
    (`intake.check_complete`); a mismatch refuses the upload.
    """

    MIN_PART = 5 * 1024 * 1024  # S3's smallest part but the last

    def __init__(self, bucket: str, *, endpoint: str | None = None, access_key: str | None = None,
                 secret_key: str | None = None, region: str = "us-east-1", client=None, min_part: int = MIN_PART,
                 create_bucket: bool = True):
        self.bucket, self.min_part = bucket, min_part
        if client is None:
            import boto3
            from botocore.config import Config
            client = boto3.client(
                "s3", endpoint_url=endpoint or None, aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                region_name=region,
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"},
                              signature_version="s3v4", connect_timeout=5, read_timeout=60,
                              # S3-compatible servers differ on the newer default CRC checksums; Content-MD5 is universal
                              request_checksum_calculation="when_required",
                              response_checksum_validation="when_required"))
        self.s3 = client
        self._lock = threading.Lock()
        if create_bucket:
            self._ensure_bucket()

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except ClientError:
            try:
                self.s3.create_bucket(Bucket=self.bucket)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    @staticmethod
    def _key(upload_id: str) -> str:
        return f"objects/{_safe(upload_id)}"

    @staticmethod
    def _chunk_key(upload_id: str, n: int) -> str:
        return f"chunks/{_safe(upload_id)}/{n:06d}"

    @staticmethod
    def _md5(data: bytes) -> str:
        return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - S3's transfer check, not security

    def _open_uploads(self, key: str) -> list[dict]:
        from botocore.exceptions import ClientError
        try:
            r = self.s3.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
        except ClientError as e:  # gofakes3 answers NoSuchUpload for a bucket that never had a multipart upload
            if e.response.get("Error", {}).get("Code") == "NoSuchUpload":
                return []
            raise
        ups = [u for u in r.get("Uploads") or [] if u["Key"] == key]
        return sorted(ups, key=lambda u: (u.get("Initiated") or 0, u["UploadId"]))

    def _multipart(self, upload_id: str, create: bool) -> str | None:
        """The S3 upload id of this upload's multipart upload: the oldest open one for its key (so that two creators
        racing settle on the same), created when `create`."""
        key = self._key(upload_id)
        with self._lock:
            ups = self._open_uploads(key)
            if ups or not create:
                return ups[0]["UploadId"] if ups else None
            mine = self.s3.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
            first = self._open_uploads(key)[0]["UploadId"]
            if first != mine:
                self.s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=mine)
            return first

    def _parts(self, upload_id: str, s3_upload: str) -> dict[int, dict]:
        parts: dict[int, dict] = {}
        kw = {"Bucket": self.bucket, "Key": self._key(upload_id), "UploadId": s3_upload}
        while True:
            r = self.s3.list_parts(**kw)
            for p in r.get("Parts") or []:
                parts[p["PartNumber"]] = p
            if not r.get("IsTruncated"):
                return parts
            kw["PartNumberMarker"] = r["NextPartNumberMarker"]

    def put_chunk(self, upload_id: str, n: int, data: bytes) -> None:
        """Idempotent: the same chunk again replaces itself (a part number or an object key per chunk)."""
        if len(data) >= self.min_part:
            s3_upload = self._multipart(upload_id, create=True)
            self.s3.upload_part(Bucket=self.bucket, Key=self._key(upload_id), UploadId=s3_upload, PartNumber=n + 1,
                                Body=data, ContentMD5=self._md5(data))
        else:
            self.s3.put_object(Bucket=self.bucket, Key=self._chunk_key(upload_id, n), Body=data,
                               ContentMD5=self._md5(data))

    def _chunk(self, upload_id: str, n: int) -> bytes | None:
        from botocore.exceptions import ClientError
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self._chunk_key(upload_id, n))["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def assemble(self, upload_id: str, chunks: int) -> str:
        """Makes the object from the chunks (idempotent: an object already made is kept) and returns the sha256 of
        the object as stored."""
        key = self._key(upload_id)
        s3_upload = self._multipart(upload_id, create=False)
        parts = self._parts(upload_id, s3_upload) if s3_upload else {}
        if s3_upload and all(n + 1 in parts for n in range(chunks - 1)):
            last = chunks  # part number of the last chunk
            if last not in parts:
                data = self._chunk(upload_id, chunks - 1)
                if data is None:
                    raise FileNotFoundError(f"chunk {chunks - 1} of {upload_id} is missing")
                r = self.s3.upload_part(Bucket=self.bucket, Key=key, UploadId=s3_upload, PartNumber=last, Body=data,
                                        ContentMD5=self._md5(data))
                parts[last] = {"PartNumber": last, "ETag": r["ETag"]}
            self.s3.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=s3_upload, MultipartUpload={
                "Parts": [{"PartNumber": i, "ETag": parts[i]["ETag"]} for i in range(1, chunks + 1)]})
        elif s3_upload is None and self._chunk(upload_id, 0) is None and self._exists(key):
            pass  # assembled before (its chunks are gone): the object stands
        else:
            self._compose(upload_id, chunks, s3_upload, parts)
        for n in range(chunks):
            self.s3.delete_object(Bucket=self.bucket, Key=self._chunk_key(upload_id, n))
        return self._sha256(key)

    def _compose(self, upload_id: str, chunks: int, s3_upload: str | None, parts: dict[int, dict]) -> None:
        """Small chunks: read back in order and written as parts of at least min_part bytes (one PutObject if the
        whole is smaller). Chunks already sent as parts of a multipart upload cannot be read back before it is
        completed: that only happens when a client changed chunk sizes, which intake does not allow."""
        if parts:
            raise ValueError(f"upload {upload_id}: chunks stored both as parts and objects")
        key = self._key(upload_id)
        if s3_upload:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=s3_upload)
        buf, done, new_upload = io.BytesIO(), [], None
        for n in range(chunks):
            data = self._chunk(upload_id, n)
            if data is None:
                raise FileNotFoundError(f"chunk {n} of {upload_id} is missing")
            buf.write(data)
            if buf.tell() >= self.min_part and n < chunks - 1:
                new_upload = new_upload or self.s3.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
                body = buf.getvalue()
                r = self.s3.upload_part(Bucket=self.bucket, Key=key, UploadId=new_upload, PartNumber=len(done) + 1,
                                        Body=body, ContentMD5=self._md5(body))
                done.append({"PartNumber": len(done) + 1, "ETag": r["ETag"]})
                buf = io.BytesIO()
        body = buf.getvalue()
        if new_upload is None:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentMD5=self._md5(body))
            return
        r = self.s3.upload_part(Bucket=self.bucket, Key=key, UploadId=new_upload, PartNumber=len(done) + 1,
                                Body=body, ContentMD5=self._md5(body))
        done.append({"PartNumber": len(done) + 1, "ETag": r["ETag"]})
        self.s3.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=new_upload,
                                          MultipartUpload={"Parts": done})

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError:
            return False

    def _sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        for block in iter(lambda: body.read(1024 * 1024), b""):
            digest.update(block)
        return digest.hexdigest()

    def open(self, upload_id: str) -> BinaryIO:
        """The object's bytes (read into memory: attachments are at most INTAKE_MAX_UPLOAD_BYTES)."""
        return io.BytesIO(self.s3.get_object(Bucket=self.bucket, Key=self._key(upload_id))["Body"].read())


def from_settings(settings) -> BlobStore:
    """`blob_store` s3 (`s3_endpoint`, `s3_bucket`, `s3_access_key`, `s3_secret_key`, `s3_region`) or local (the
    default: `intake_blob_dir`, else VAR_DIR/recommend-blobs, else a fresh temporary directory)."""
    kind = settings.blob_store.strip().lower()
    if kind == "s3":
        return S3BlobStore(settings.s3_bucket, endpoint=settings.s3_endpoint or None,
                           access_key=settings.s3_access_key or None, secret_key=settings.s3_secret_key or None,
                           region=settings.s3_region or "us-east-1")
    if kind != "local":
        raise ValueError(f"BLOB_STORE must be local or s3, not {kind!r}")
    root, var_dir = settings.intake_blob_dir, settings.var_dir
    if not root:
        root = str(Path(var_dir) / "recommend-blobs") if var_dir else tempfile.mkdtemp(prefix="recommend-blobs-")
    return LocalBlobStore(root)
