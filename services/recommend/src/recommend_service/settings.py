"""The recommend service's own settings: the common ones plus its knobs, each read from the environment variable of
the same name (upper case) when `create_app()` is given no settings."""
from __future__ import annotations

from recommend_service import intake
from servicekit.settings import Settings


class RecommendSettings(Settings):
    service_name: str = "recommend"
    intake_max_upload_bytes: int = intake.MAX_UPLOAD_BYTES  # R-POR-05: an attachment's largest size
    intake_blob_dir: str = ""  # where attachments are kept; default VAR_DIR/recommend-blobs, else a temporary one
    var_dir: str = ""
    blob_store: str = "local"  # local | s3 (an S3-compatible bucket for clusters: the s3_* settings)
    s3_endpoint: str = ""
    s3_bucket: str = "recommend-attachments"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_region: str = "us-east-1"
    # records per poll when learning profiles (issue 22): each batch writes every peer group and industry it touches
    # once, so an import's flood is learnt faster in larger batches; one registration still goes at once
    learn_batch_max: int = 1000
    benchmark_font_file: str = ""  # R-REC-06: a TrueType font with Japanese glyphs to embed, tried first
