"""One validated, frozen settings object read from the environment at start.

Everything configurable lives here and is passed explicitly to what needs it;
no other module reads `os.environ`. Secrets are `SecretStr` so they never
reach a log line or a repr.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tts_worker.bucket_endpoint import BucketTarget
from tts_worker.bucket_endpoint import resolve as resolve_bucket

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: str) -> tuple[Network, ...]:
    """`"10.0.0.0/8, 192.168.4.7"` as networks; ValueError naming the entry that is not one.

    A network wider than /8 (IPv4) or /7 (IPv6) is refused: it would switch the address check off, not
    make room for one internal server."""
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network (like 10.0.0.0/8 or fd00:1::/64)") from None
        if network.prefixlen < (8 if network.version == 4 else 7):
            raise ValueError(f"{item!r} is too wide; list only the networks of the servers to fetch from")
        networks.append(network)
    return tuple(networks)


QualityMode = Literal["off", "check", "retry"]
MAX_QUALITY_ATTEMPTS = 5
# The quality guard's default word error rate a take may have. F5-TTS's paper reports ~2-3 % WER for its
# output with a Whisper ASR; Whisper-small on clean speech makes ~3-5 %. 0.2 allows a misheard name in a
# 10-word chunk and fails a dropped or repeated phrase; a chunk of four words or fewer must come back exact.
DEFAULT_MAX_ERROR_RATE = 0.2


def describe_errors(exc: ValidationError) -> str:
    """Each bad variable and why, `VARIABLE: problem; ...`; never a value, which may be a secret."""
    problems = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        variable = ".".join(map(str, error["loc"])).upper()
        problems.append(f"{variable}: {message}" if variable else message)
    return "; ".join(problems)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    model_dir: Path = Field(Path("models"), description="Baked model directory (see bake_models.py).")
    storage_dir: Path = Field(Path("outputs"), description="Local storage root when no bucket is set.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    max_text_chars: int = Field(5000, ge=1, le=100_000)
    max_text_bytes: int | None = Field(
        None,
        ge=1,
        le=400_000,
        description="Longest `text` in UTF-8 bytes, which F5-TTS's generated duration follows (an emoji counts 4); "
        "unset: 1.2 x MAX_TEXT_CHARS, so Latin-script text up to MAX_TEXT_CHARS passes.",
    )
    max_reference_seconds: float = Field(12.0, gt=1.0, le=20.0)
    warmup: bool | None = Field(
        None,
        description="Run the smallest generations that ready the first job's kernels before taking jobs; "
        "unset: on CUDA (kernel choice, cuBLAS handles), not on CPU, where it cost more at start than the first "
        "job saved (docs/PERFORMANCE.md).",
    )
    background_load: bool = Field(
        True,
        description="Load the normalisation grammars, aligner and ASR model in a background thread while the "
        "worker already takes jobs (a job that needs them waits); false: load them before the first job-take.",
    )
    max_concurrency: int = Field(1, ge=1, le=16, description="Jobs one worker takes at once (RunPod's loop).")
    batch_max_size: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Chunks (of one or several jobs) sampled as one tensor batch; 1 = no batching. "
        "Default: 4 on CUDA, 1 on CPU (where a batch is slower than its items one by one).",
    )
    streaming: bool = Field(
        False,
        description="Serve with a generator handler: requests with `stream` get each chunk as it is ready; "
        "every job's output becomes the list of what it yielded (RunPod's return_aggregate_stream).",
    )
    batch_wait_ms: float = Field(
        20.0, ge=0, le=1000, description="How long a batch waits for a job that has arrived but not yet submitted."
    )
    quality_mode: QualityMode | None = Field(
        None,
        description="The quality guard when a request does not say: off, check or retry. Default: retry on CUDA, "
        "off on CPU (where one retry costs minutes).",
    )
    quality_max_attempts: int = Field(
        3,
        ge=1,
        le=MAX_QUALITY_ATTEMPTS,
        description="Takes per chunk in quality mode retry when a request does not say.",
    )
    # Set by RunPod on its serverless workers: where jobs are taken from and results (and so progress
    # updates) posted, and the endpoint's id. The runpod SDK itself takes RUNPOD_WEBHOOK_GET_JOB as "on RunPod".
    runpod_webhook_get_job: str | None = None
    runpod_webhook_post_output: str | None = None
    runpod_endpoint_id: str | None = None
    inline_files: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Put the files a job stores into its result as base64: on, off, or auto = on when the "
        "worker runs on RunPod without a bucket (its disk is out of every client's reach).",
    )

    # Object storage (S3, B2, R2, MinIO, SeaweedFS). S3 is used when a bucket is named: by S3_BUCKET, or in
    # BUCKET_ENDPOINT_URL as RunPod's convention has it (bucket_endpoint.py). RunPod's BUCKET_* credentials work too.
    s3_bucket: str | None = Field(None, description="Bucket for outputs and voices; unset = local storage.")
    aws_access_key_id: SecretStr | None = Field(
        None, validation_alias=AliasChoices("aws_access_key_id", "bucket_access_key_id")
    )
    aws_secret_access_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("aws_secret_access_key", "bucket_secret_access_key")
    )
    aws_region: str | None = Field(None, validation_alias=AliasChoices("aws_region", "aws_default_region"))
    aws_endpoint_url: str | None = Field(
        None,
        validation_alias=AliasChoices("aws_endpoint_url", "aws_endpoint_url_s3"),
        description="S3-compatible service endpoint; unset = AWS.",
    )
    bucket_endpoint_url: str | None = Field(
        None, description="RunPod's endpoint variable; may carry the bucket (https://<bucket>.s3.<region>...)."
    )
    s3_presign_expiry_seconds: int = Field(3600, ge=1, le=604_800, description="Lifetime of presigned URLs.")
    s3_public_base_url: str | None = Field(
        None, description="When set, results link `<base>/<key>` instead of presigned URLs (a public bucket/CDN)."
    )
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    s3_max_attempts: int = Field(5, ge=1, le=20, description="Attempts per request (throttling, 5xx, resets).")
    s3_retry_mode: Literal["standard", "adaptive"] = "standard"
    s3_multipart_threshold_mb: int = Field(16, ge=5, le=5120, description="Files from this size upload in parts.")
    s3_connect_timeout: float = Field(5.0, gt=0, le=120)
    s3_read_timeout: float = Field(60.0, gt=0, le=600)
    s3_extra_buckets: str = Field(
        "",
        validation_alias=AliasChoices("s3_extra_buckets", "s3_fetch_buckets"),  # its name until 0.1
        description="Comma-separated buckets besides S3_BUCKET that a request's s3:// URLs may name: inputs "
        "read from them, outputs (audio_url / output_url) written into them.",
    )

    # Remote reference audio (https://, s3://, base64).
    fetch_allow_http: bool = Field(False, description="Also accept plain http:// URLs (never by default).")
    fetch_max_bytes: int = Field(20 * 1024 * 1024, ge=1024, le=500 * 1024 * 1024)
    fetch_connect_timeout: float = Field(5.0, gt=0, le=60)
    fetch_read_timeout: float = Field(15.0, gt=0, le=300)
    fetch_deadline_seconds: float = Field(60.0, gt=0, le=600, description="Whole download, redirects included.")
    fetch_max_redirects: int = Field(3, ge=0, le=10)
    fetch_allow_networks: str = Field(
        "",
        description="Comma-separated addresses/networks (CIDR) exempt from the public-address check, e.g. an "
        "asset server inside the VPC. Cloud metadata addresses stay refused.",
    )
    min_audio_seconds: float = Field(1.0, ge=0.1, le=10.0, description="Shortest accepted reference/upload.")
    max_audio_seconds: float = Field(300.0, ge=1.0, le=3600.0, description="Longest accepted input before trim.")
    reference_cache_entries: int = Field(16, ge=0, le=1024, description="Prepared references kept per worker.")

    @model_validator(mode="after")
    def _check_storage(self) -> Settings:
        self.storage_target()
        return self

    def storage_target(self) -> BucketTarget | None:
        """The bucket, endpoint, region and addressing style the storage settings mean; None = local storage.
        ValueError naming the variable when they contradict each other."""
        endpoint, variable = self.aws_endpoint_url, "AWS_ENDPOINT_URL"
        if self.bucket_endpoint_url:
            if endpoint and endpoint.rstrip("/") != self.bucket_endpoint_url.rstrip("/"):
                raise ValueError("AWS_ENDPOINT_URL and BUCKET_ENDPOINT_URL are both set and differ; set one of them")
            endpoint, variable = self.bucket_endpoint_url, "BUCKET_ENDPOINT_URL"
        return resolve_bucket(
            bucket=self.s3_bucket,
            endpoint_url=endpoint,
            region=self.aws_region,
            addressing_style=self.s3_addressing_style,
            endpoint_variable=variable,
        )

    @field_validator("fetch_allow_networks")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    def extra_buckets(self) -> list[str]:
        """`S3_EXTRA_BUCKETS`, parsed."""
        return [b.strip() for b in self.s3_extra_buckets.split(",") if b.strip()]

    def on_runpod(self) -> bool:
        """Whether this process is a RunPod serverless worker (RunPod's environment says so)."""
        return bool(self.runpod_webhook_get_job or self.runpod_endpoint_id)

    def fetch_networks(self) -> tuple[Network, ...]:
        """`FETCH_ALLOW_NETWORKS`, parsed."""
        return parse_networks(self.fetch_allow_networks)

    def resolved_batch_max_size(self, device: str) -> int:
        if self.batch_max_size is not None:
            return self.batch_max_size
        return 4 if device.startswith("cuda") else 1

    def resolved_warmup(self, device: str) -> bool:
        return self.warmup if self.warmup is not None else device.startswith("cuda")

    def resolved_quality_mode(self, device: str) -> QualityMode:
        if self.quality_mode is not None:
            return self.quality_mode
        return "retry" if device.startswith("cuda") else "off"

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
