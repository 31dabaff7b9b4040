"""Which bucket, service endpoint, region and addressing style the storage settings mean.

RunPod's convention (the runpod SDK's `rp_upload`, its docs and workers such as
worker-comfyui) is three variables, `BUCKET_ENDPOINT_URL`, `BUCKET_ACCESS_KEY_ID`,
`BUCKET_SECRET_ACCESS_KEY`, with the bucket in the endpoint's host:

    https://<bucket>.s3.<region>.amazonaws.com          AWS S3 (virtual-hosted)
    https://s3.<region>.amazonaws.com/<bucket>          AWS S3 (path)
    https://<bucket>.s3.<region>.backblazeb2.com        Backblaze B2
    https://<bucket>.<region>.digitaloceanspaces.com    DigitalOcean Spaces
    https://<bucket>.s3.<region>.wasabisys.com          Wasabi
    https://<account>.r2.cloudflarestorage.com          Cloudflare R2 (no bucket: S3_BUCKET names it)
    https://<bucket>.s3.<region>.<domain>               other providers' `<bucket>.s3.<region>` form
    http://127.0.0.1:9000/<bucket>                      MinIO, SeaweedFS... (path style)

(`rp_upload` passes that endpoint to boto3 as it is and names a per-month "bucket",
which with path addressing becomes a key prefix inside the real bucket.) This worker
instead resolves the settings once into a `BucketTarget`: the bucket, the service
endpoint without it, the region and the addressing style, so results are signed for
the right host and other buckets (`S3_FETCH_BUCKETS`) are reachable through the same
endpoint.

`resolve(...)` is pure (no I/O, no third-party import). It returns None when no bucket
is configured anywhere (local storage), and raises ValueError naming the variable
when the settings contradict each other or name no bucket. Precedence: S3_BUCKET
names the bucket when set; an explicit S3_ADDRESSING_STYLE and AWS_REGION win over
what the endpoint implies.

`s3_options(settings)` is the bucket and the `S3Options` the S3 backend (s3.py) is built with: the
target above plus credentials, URL, retry, timeout and multipart settings.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from tts_worker.settings import Settings

AddressingStyle = Literal["auto", "path", "virtual"]

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_AWS_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d+"


@dataclass(frozen=True)
class _Provider:
    name: str
    host: re.Pattern[str]  # full match on the lower-cased host; groups `bucket` and `region` are optional
    region: str | None = None  # when the host names none
    generic: bool = False  # a guess from the host's shape, not a provider's documented form


def _host(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(?:(?P<bucket>.+?)\.)?{pattern}")


_PROVIDERS = (
    _Provider(
        "AWS S3",
        _host(rf"s3(?:[.-](?:dualstack\.)?(?P<region>{_AWS_REGION}))?\.amazonaws\.com(?:\.cn)?"),
        region="us-east-1",
    ),
    _Provider("Backblaze B2", _host(rf"s3\.(?P<region>{_AWS_REGION})\.backblazeb2\.com")),
    _Provider("Cloudflare R2", _host(r"[0-9a-f]{32}(?:\.(?:eu|fedramp))?\.r2\.cloudflarestorage\.com"), region="auto"),
    _Provider("DigitalOcean Spaces", _host(r"(?P<region>[a-z]{3}\d)\.digitaloceanspaces\.com")),
    _Provider("Wasabi", _host(rf"s3(?:\.(?P<region>{_AWS_REGION}))?\.wasabisys\.com"), region="us-east-1"),
    _Provider(
        "S3-compatible",
        re.compile(r"(?P<bucket>.+?)\.s3\.(?P<region>[a-z0-9-]+)\.[a-z0-9-]+\.[a-z0-9.-]+"),
        generic=True,
    ),
)
_DO_CDN = re.compile(r"(?:.+\.)?[a-z]{3}\d\.cdn\.digitaloceanspaces\.com")


@dataclass(frozen=True)
class BucketTarget:
    """Where objects go: `bucket` at `endpoint_url` (None = AWS's default endpoint for `region`)."""

    bucket: str
    endpoint_url: str | None
    region: str
    addressing_style: AddressingStyle
    provider: str
    bucket_from: str  # e.g. "S3_BUCKET", "the host of BUCKET_ENDPOINT_URL"

    def describe(self) -> str:
        """One line for the start-up log and the storage check; no credentials in it."""
        where = self.endpoint_url or f"AWS's endpoint for {self.region}"
        return (
            f"bucket {self.bucket} (from {self.bucket_from}) on {self.provider} at {where}, region {self.region}, "
            f"addressing {self.addressing_style}"
        )


def _is_local(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def resolve(
    *,
    bucket: str | None,
    endpoint_url: str | None,
    region: str | None = None,
    addressing_style: AddressingStyle = "auto",
    endpoint_variable: str = "BUCKET_ENDPOINT_URL",
) -> BucketTarget | None:
    """The storage target the settings describe; None = no bucket anywhere (local storage).

    `bucket` is S3_BUCKET, `endpoint_url` the endpoint variable (named `endpoint_variable` in messages),
    `region` AWS_REGION, `addressing_style` S3_ADDRESSING_STYLE."""
    bucket = bucket.strip() if bucket else None
    if not endpoint_url or not endpoint_url.strip():
        if not bucket:
            return None
        return BucketTarget(bucket, None, region or "us-east-1", addressing_style, "AWS S3", "S3_BUCKET")

    var = endpoint_variable
    parts = urlsplit(endpoint_url.strip())
    # The value is never echoed: an endpoint pasted with credentials in it must not reach a log.
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{var}: must be an http:// or https:// URL, like https://s3.us-west-2.amazonaws.com")
    if parts.username or parts.password:
        raise ValueError(f"{var}: must not carry credentials; set BUCKET_ACCESS_KEY_ID and BUCKET_SECRET_ACCESS_KEY")
    if parts.query or parts.fragment:
        raise ValueError(f"{var}: must not have a query or fragment")
    host = parts.hostname.lower()
    if _DO_CDN.fullmatch(host):
        raise ValueError(
            f"{var}: is a DigitalOcean CDN host, which does not answer the S3 API; use "
            "https://<bucket>.<region>.digitaloceanspaces.com and put the CDN URL in S3_PUBLIC_BASE_URL"
        )
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        raise ValueError(f"{var}: has an invalid port") from None
    segments = [s for s in parts.path.split("/") if s]

    provider = next((p for p in _PROVIDERS if p.host.fullmatch(host)), None)
    match = provider.host.fullmatch(host) if provider else None
    host_bucket = match.group("bucket") if match else None
    if host_bucket and not _BUCKET_NAME.match(host_bucket):
        host_bucket = None  # not a bucket name: the host is the service's own
    if provider and provider.generic and (not host_bucket or (bucket and bucket != host_bucket)):
        provider, match, host_bucket = None, None, None  # a service host that happens to look like `<x>.s3.<y>`
    name = provider.name if provider else "S3-compatible"
    derived_region = (match.group("region") if match and "region" in match.groupdict() else None) or (
        provider.region if provider else None
    )
    service_host = host[len(host_bucket) + 1 :] if host_bucket else host
    service_url = f"{parts.scheme}://{service_host}{port}"

    if host_bucket:
        if segments:
            raise ValueError(
                f"{var}: names bucket {host_bucket} in its host, so it can't have a path too; use {parts.scheme}://"
                f"{host}{port}"
            )
        if bucket and bucket != host_bucket:
            raise ValueError(
                f"S3_BUCKET is {bucket} but {var} names bucket {host_bucket} in its host; keep one of them "
                f"(the endpoint without a bucket is {service_url})"
            )
        style = addressing_style
        if style == "auto":
            # Virtual-hosted, as the endpoint was written; a dotted name can't match the TLS wildcard certificate.
            style = "path" if "." in host_bucket and parts.scheme == "https" else "virtual"
        return BucketTarget(
            host_bucket, service_url, region or derived_region or "us-east-1", style, name, f"the host of {var}"
        )

    if len(segments) == 1 and (not bucket or bucket == segments[0]):
        if not _BUCKET_NAME.match(segments[0]):
            raise ValueError(f"{var}: its path is not a bucket name (3-63 lower-case letters, digits, '.', '-')")
        bucket_from = f"the path of {var}" if not bucket else "S3_BUCKET"
        style = "path" if addressing_style == "auto" else addressing_style
        return BucketTarget(segments[0], service_url, region or derived_region or "us-east-1", style, name, bucket_from)
    if not bucket:
        hint = " (an R2 account endpoint never does)" if name == "Cloudflare R2" else ""
        raise ValueError(
            f"{var}: names no bucket{hint}; set S3_BUCKET, or write the endpoint with the bucket in it "
            "(https://<bucket>.s3.<region>.amazonaws.com, http://host:port/<bucket>)"
        )
    # A service endpoint, possibly under a path of its own (S3_BUCKET set, path not the bucket): used as written.
    endpoint = f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"
    style = addressing_style
    if style == "auto" and _is_local(host):
        style = "path"  # no DNS for <bucket>.127.0.0.1
    return BucketTarget(bucket, endpoint, region or derived_region or "us-east-1", style, name, "S3_BUCKET")


@dataclass(frozen=True)
class S3Options:
    """How to reach the bucket and behave there; secrets are kept out of the repr."""

    endpoint_url: str | None = None  # None: AWS
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    region: str | None = None
    presign_expiry_seconds: int = 3600
    public_base_url: str | None = None
    addressing_style: str = "auto"
    max_attempts: int = 5
    retry_mode: str = "standard"
    multipart_threshold: int = 16 * 1024 * 1024
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    extra_buckets: tuple[str, ...] = ()  # besides the bucket, what a request's s3:// URLs may name


def s3_options(settings: Settings) -> tuple[str, S3Options]:
    """The bucket the settings name (`Settings.storage_target`) and how to reach it; ValueError when they
    name none."""
    target = settings.storage_target()
    if target is None:
        raise ValueError("no bucket is configured (S3_BUCKET or BUCKET_ENDPOINT_URL)")

    def secret(value: Any) -> str | None:
        return value.get_secret_value() if value is not None else None

    return target.bucket, S3Options(
        endpoint_url=target.endpoint_url,
        access_key_id=secret(settings.aws_access_key_id),
        secret_access_key=secret(settings.aws_secret_access_key),
        region=target.region,
        presign_expiry_seconds=settings.s3_presign_expiry_seconds,
        public_base_url=settings.s3_public_base_url,
        addressing_style=target.addressing_style,
        max_attempts=settings.s3_max_attempts,
        retry_mode=settings.s3_retry_mode,
        multipart_threshold=settings.s3_multipart_threshold_mb * 1024 * 1024,
        connect_timeout=settings.s3_connect_timeout,
        read_timeout=settings.s3_read_timeout,
        extra_buckets=tuple(settings.extra_buckets()),
    )
