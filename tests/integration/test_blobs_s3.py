"""R-POR-05 attachments in an S3-compatible object store (`S3BlobStore`, BLOB_STORE=s3), against a real S3 server
(deploy/local/s3.sh, the `s3` fixture): chunks put out of order, an upload resumed by a new store instance (the
service killed and restarted, or another replica), assembled, read back; a chunk damaged in the bucket makes the
whole file's checksum differ and the upload is refused. Both of S3's paths: chunks of at least 5 MiB (parts of one
multipart upload, found again by a new instance by its S3 upload id) and small chunks (objects composed on assemble)."""
from __future__ import annotations

import hashlib
import os
import uuid

import pytest

from recommend_service import blobs, intake
from recommend_service.blobs import S3BlobStore
from servicekit.refusals import Rejected

MIB = 1024 * 1024


def store(s3: dict, **kw) -> S3BlobStore:
    return S3BlobStore(s3["S3_BUCKET"], endpoint=s3["S3_ENDPOINT"], access_key=s3["S3_ACCESS_KEY"],
                       secret_key=s3["S3_SECRET_KEY"], region=s3["S3_REGION"], **kw)


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_R_POR_05_s3_store_is_chosen_by_the_settings(s3, monkeypatch):
    from recommend_service.settings import RecommendSettings

    for k, v in s3.items():
        monkeypatch.setenv(k, v)
    assert isinstance(blobs.from_settings(RecommendSettings()), S3BlobStore)  # BLOB_STORE=s3 and S3_* from the env
    local = RecommendSettings(blob_store="local", intake_blob_dir="/tmp/blobs-local-test")
    assert isinstance(blobs.from_settings(local), blobs.LocalBlobStore)


@pytest.mark.parametrize("chunk_size", [1024, 5 * MIB], ids=["small-chunks-composed", "multipart-parts"])
def test_R_POR_05_s3_chunks_out_of_order_resumed_by_a_new_instance_assembled_and_read_back(s3, chunk_size):
    data = os.urandom(chunk_size * 2 + 300)  # three chunks, the last short
    chunks, up = split(data, chunk_size), f"up-{uuid.uuid4().hex}"
    first = store(s3)
    first.put_chunk(up, 2, chunks[2])  # out of order
    first.put_chunk(up, 0, chunks[0])
    if chunk_size >= S3BlobStore.MIN_PART:  # a chunk this big is a part of the upload's S3 multipart upload
        assert first._multipart(up, create=False) is not None
    del first  # "killed": a new instance (a restarted service, another replica) continues the same upload
    second = store(s3)
    second.put_chunk(up, 0, chunks[0])  # a chunk sent again is harmless
    second.put_chunk(up, 1, chunks[1])
    digest = second.assemble(up, len(chunks))
    assert digest == hashlib.sha256(data).hexdigest()
    assert second.open(up).read() == data
    assert store(s3).assemble(up, len(chunks)) == digest  # assembling again is idempotent
    intake.check_complete(len(data), {str(n): "x" for n in range(len(chunks))}, digest, digest, chunk_size)


@pytest.mark.parametrize("chunk_size", [1024, 5 * MIB], ids=["small-chunks-composed", "multipart-parts"])
def test_R_POR_05_s3_a_chunk_damaged_in_the_bucket_makes_the_upload_refused(s3, chunk_size):
    data = os.urandom(chunk_size + 1000)
    chunks, up, st = split(data, chunk_size), f"up-{uuid.uuid4().hex}", store(s3)
    st.put_chunk(up, 0, chunks[0])
    st.put_chunk(up, 1, b"\0" * len(chunks[1]))  # what sits in the bucket is not what the client sent
    assembled = st.assemble(up, len(chunks))
    assert assembled != hashlib.sha256(data).hexdigest()
    with pytest.raises(Rejected) as e:
        intake.check_complete(len(data), {"0": "a", "1": "b"}, hashlib.sha256(data).hexdigest(), assembled, chunk_size)
    assert e.value.extra["code"] == "file_checksum"


def test_R_POR_05_s3_server_refuses_bytes_damaged_on_the_way(s3):
    """Every write carries Content-MD5: the server itself refuses a body that does not match it."""
    from botocore.exceptions import ClientError
    st = store(s3)
    with pytest.raises(ClientError) as e:
        st.s3.put_object(Bucket=st.bucket, Key="chunks/damaged/000000", Body=b"the bytes that arrived",
                         ContentMD5=st._md5(b"the bytes that were sent"))
    assert e.value.response["Error"]["Code"] in ("BadDigest", "InvalidDigest")
