"""bucket_endpoint.resolve over the endpoint shapes RunPod users write, and Settings/open_storage using it.

Each row is what a user sets (BUCKET_ENDPOINT_URL, S3_BUCKET) and the bucket, service endpoint,
region and addressing style the worker must use; the presigned URL boto3 then signs is checked too,
so `bucket.bucket.host` (the old behaviour) can't come back.
"""

from __future__ import annotations

import logging
import os
from urllib.parse import urlsplit

import pytest

from tts_worker.bucket_endpoint import BucketTarget, resolve
from tts_worker.s3 import S3Options, S3Storage
from tts_worker.settings import Settings, describe_errors
from tts_worker.storage import LocalStorage, open_storage

R2_ACCOUNT = "0123456789abcdef0123456789abcdef"

# endpoint, S3_BUCKET -> bucket, service endpoint, region, addressing style, provider, presigned URL host/path prefix
TABLE = [
    pytest.param(
        "https://media-out.s3.us-west-2.amazonaws.com", None,
        ("media-out", "https://s3.us-west-2.amazonaws.com", "us-west-2", "virtual", "AWS S3"),
        "https://media-out.s3.us-west-2.amazonaws.com/output/x.wav",
        id="aws-virtual-host",
    ),
    pytest.param(
        "https://media-out.s3.us-west-2.amazonaws.com/", "media-out",  # the same bucket named twice is fine
        ("media-out", "https://s3.us-west-2.amazonaws.com", "us-west-2", "virtual", "AWS S3"),
        "https://media-out.s3.us-west-2.amazonaws.com/output/x.wav",
        id="aws-virtual-host-and-s3-bucket",
    ),
    pytest.param(
        "https://media-out.s3.amazonaws.com", None,
        ("media-out", "https://s3.amazonaws.com", "us-east-1", "virtual", "AWS S3"),
        "https://media-out.s3.amazonaws.com/output/x.wav",
        id="aws-global-virtual-host",
    ),
    pytest.param(
        "https://media.out.s3.eu-central-1.amazonaws.com", None,  # dotted: no TLS wildcard match, so path
        ("media.out", "https://s3.eu-central-1.amazonaws.com", "eu-central-1", "path", "AWS S3"),
        "https://s3.eu-central-1.amazonaws.com/media.out/output/x.wav",
        id="aws-dotted-bucket",
    ),
    pytest.param(
        "https://s3.us-west-2.amazonaws.com/media-out", None,
        ("media-out", "https://s3.us-west-2.amazonaws.com", "us-west-2", "path", "AWS S3"),
        "https://s3.us-west-2.amazonaws.com/media-out/output/x.wav",
        id="aws-path",
    ),
    pytest.param(
        "https://s3.us-west-2.amazonaws.com", "media-out",
        ("media-out", "https://s3.us-west-2.amazonaws.com", "us-west-2", "auto", "AWS S3"),
        "https://s3.us-west-2.amazonaws.com/media-out/output/x.wav",
        id="aws-service-endpoint-and-s3-bucket",
    ),
    pytest.param(
        f"https://{R2_ACCOUNT}.r2.cloudflarestorage.com", "media-out",
        ("media-out", f"https://{R2_ACCOUNT}.r2.cloudflarestorage.com", "auto", "auto", "Cloudflare R2"),
        f"https://{R2_ACCOUNT}.r2.cloudflarestorage.com/media-out/output/x.wav",
        id="r2-account-endpoint",
    ),
    pytest.param(
        f"https://media-out.{R2_ACCOUNT}.eu.r2.cloudflarestorage.com", None,
        ("media-out", f"https://{R2_ACCOUNT}.eu.r2.cloudflarestorage.com", "auto", "virtual", "Cloudflare R2"),
        f"https://media-out.{R2_ACCOUNT}.eu.r2.cloudflarestorage.com/output/x.wav",
        id="r2-bucket-in-host-eu",
    ),
    pytest.param(
        "https://media-out.s3.us-west-004.backblazeb2.com", None,
        ("media-out", "https://s3.us-west-004.backblazeb2.com", "us-west-004", "virtual", "Backblaze B2"),
        "https://media-out.s3.us-west-004.backblazeb2.com/output/x.wav",
        id="b2-bucket-in-host",
    ),
    pytest.param(
        "https://s3.eu-central-003.backblazeb2.com", "media-out",
        ("media-out", "https://s3.eu-central-003.backblazeb2.com", "eu-central-003", "auto", "Backblaze B2"),
        "https://s3.eu-central-003.backblazeb2.com/media-out/output/x.wav",
        id="b2-service-endpoint",
    ),
    pytest.param(
        "https://media-out.nyc3.digitaloceanspaces.com", None,
        ("media-out", "https://nyc3.digitaloceanspaces.com", "nyc3", "virtual", "DigitalOcean Spaces"),
        "https://media-out.nyc3.digitaloceanspaces.com/output/x.wav",
        id="do-spaces-bucket-in-host",
    ),
    pytest.param(
        "https://media-out.s3.eu-central-2.wasabisys.com", None,
        ("media-out", "https://s3.eu-central-2.wasabisys.com", "eu-central-2", "virtual", "Wasabi"),
        "https://media-out.s3.eu-central-2.wasabisys.com/output/x.wav",
        id="wasabi-bucket-in-host",
    ),
    pytest.param(
        "https://media-out.s3.fr-par.scw.cloud", None,  # rp_upload's `<bucket>.s3.<region>.` form, any provider
        ("media-out", "https://s3.fr-par.scw.cloud", "fr-par", "virtual", "S3-compatible"),
        "https://media-out.s3.fr-par.scw.cloud/output/x.wav",
        id="other-provider-bucket-in-host",
    ),
    pytest.param(
        "http://127.0.0.1:8333/media-out", None,
        ("media-out", "http://127.0.0.1:8333", "us-east-1", "path", "S3-compatible"),
        "http://127.0.0.1:8333/media-out/output/x.wav",
        id="minio-seaweedfs-path",
    ),
    pytest.param(
        "http://127.0.0.1:9000", "media-out",
        ("media-out", "http://127.0.0.1:9000", "us-east-1", "path", "S3-compatible"),
        "http://127.0.0.1:9000/media-out/output/x.wav",
        id="minio-seaweedfs-service-endpoint",
    ),
    pytest.param(
        "http://localhost:9000", "media-out",  # no DNS for media-out.localhost either
        ("media-out", "http://localhost:9000", "us-east-1", "path", "S3-compatible"),
        "http://localhost:9000/media-out/output/x.wav",
        id="localhost-service-endpoint",
    ),
    pytest.param(
        "https://storage.example.com", "media-out",  # a custom domain or CDN in front of an S3 API
        ("media-out", "https://storage.example.com", "us-east-1", "auto", "S3-compatible"),
        "https://storage.example.com/media-out/output/x.wav",
        id="custom-cdn-domain",
    ),
    pytest.param(
        "https://files.s3.example.co.uk/s3api", "media-out",  # a service under a path of its own, used as written
        ("media-out", "https://files.s3.example.co.uk/s3api", "us-east-1", "auto", "S3-compatible"),
        "https://files.s3.example.co.uk/s3api/media-out/output/x.wav",
        id="custom-domain-with-path",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("endpoint", "bucket", "expected", "signed"), TABLE)
def test_endpoint_shapes_resolve_to_bucket_service_endpoint_region_and_style(endpoint, bucket, expected, signed):
    target = resolve(bucket=bucket, endpoint_url=endpoint)
    assert target is not None
    assert (target.bucket, target.endpoint_url, target.region, target.addressing_style, target.provider) == expected
    options = S3Options(
        endpoint_url=target.endpoint_url,
        access_key_id="AKIDEXAMPLE",
        secret_access_key="secret-example",
        region=target.region,
        addressing_style=target.addressing_style,
    )
    storage = S3Storage(target.bucket, options)
    url = urlsplit(storage.url("output/x.wav"))
    assert f"{url.scheme}://{url.netloc}{url.path}" == signed
    assert f"%2F{target.region}%2Fs3%2Faws4_request" in url.query  # signed for the region it resolved


def test_explicit_region_and_style_win_over_what_the_endpoint_implies():
    target = resolve(
        bucket=None, endpoint_url="https://media-out.s3.us-west-004.backblazeb2.com", addressing_style="path",
        region="us-west-004",
    )  # fmt: skip
    assert target == BucketTarget(
        "media-out", "https://s3.us-west-004.backblazeb2.com", "us-west-004", "path", "Backblaze B2",
        "the host of BUCKET_ENDPOINT_URL",
    )  # fmt: skip
    assert resolve(bucket="b-1", endpoint_url=None, region="eu-west-1") == BucketTarget(
        "b-1", None, "eu-west-1", "auto", "AWS S3", "S3_BUCKET"
    )
    assert resolve(bucket=None, endpoint_url=None) is None and resolve(bucket=None, endpoint_url=" ") is None


def test_a_generic_s3_looking_host_with_another_s3_bucket_is_a_service_endpoint():
    target = resolve(bucket="media-out", endpoint_url="https://objects.s3.eu-1.example.net")
    assert target is not None and (target.bucket, target.endpoint_url) == (
        "media-out",
        "https://objects.s3.eu-1.example.net",
    )


@pytest.mark.parametrize(
    ("endpoint", "bucket", "message"),
    [
        (
            "https://media-out.s3.us-west-2.amazonaws.com", "other-bucket",
            "S3_BUCKET is other-bucket but BUCKET_ENDPOINT_URL names bucket media-out in its host; keep one of them "
            "(the endpoint without a bucket is https://s3.us-west-2.amazonaws.com)",
        ),
        (f"https://{R2_ACCOUNT}.r2.cloudflarestorage.com", None, "names no bucket (an R2 account endpoint never does)"),
        ("http://127.0.0.1:9000", None, "BUCKET_ENDPOINT_URL: names no bucket; set S3_BUCKET"),
        ("https://storage.example.com", None, "BUCKET_ENDPOINT_URL: names no bucket; set S3_BUCKET"),
        ("https://media-out.s3.us-west-2.amazonaws.com/prefix", None, "can't have a path too"),
        ("http://127.0.0.1:9000/a/b", None, "names no bucket"),
        ("http://127.0.0.1:9000/Not_A_Bucket", None, "its path is not a bucket name"),
        ("s3.us-west-2.amazonaws.com", "b-1", "must be an http:// or https:// URL"),
        ("https://media-out.nyc3.cdn.digitaloceanspaces.com", None, "put the CDN URL in S3_PUBLIC_BASE_URL"),
        ("https://k:topsecret@s3.us-west-2.amazonaws.com", "b-1", "must not carry credentials"),
    ],
)  # fmt: skip
def test_contradictions_and_missing_buckets_name_the_variable(endpoint, bucket, message):
    with pytest.raises(ValueError) as caught:
        resolve(bucket=bucket, endpoint_url=endpoint)
    assert message in str(caught.value)
    assert "topsecret" not in str(caught.value)


@pytest.fixture
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("AWS_", "BUCKET_", "S3_")):
            monkeypatch.delenv(name)
    return monkeypatch


def test_runpod_bucket_variables_alone_configure_s3(clean_env, tmp_path, caplog):
    clean_env.setenv("BUCKET_ENDPOINT_URL", "https://media-out.s3.us-west-004.backblazeb2.com")
    clean_env.setenv("BUCKET_ACCESS_KEY_ID", "runpod-key-id")
    clean_env.setenv("BUCKET_SECRET_ACCESS_KEY", "runpod-secret-value")
    caplog.set_level(logging.INFO, logger="tts_worker")
    settings = Settings(storage_dir=tmp_path)
    assert "runpod-secret-value" not in repr(settings) and "runpod-key-id" not in repr(settings)
    storage = open_storage(settings)
    assert isinstance(storage, S3Storage) and storage.bucket == "media-out"
    assert storage.client.meta.endpoint_url == "https://s3.us-west-004.backblazeb2.com"
    assert storage.client.meta.region_name == "us-west-004"
    assert urlsplit(storage.url("output/a.wav")).netloc == "media-out.s3.us-west-004.backblazeb2.com"
    assert "bucket media-out (from the host of BUCKET_ENDPOINT_URL) on Backblaze B2" in caplog.text
    assert "runpod-secret-value" not in caplog.text and "runpod-key-id" not in caplog.text


def test_bad_combinations_stop_settings_naming_the_variables(clean_env):
    clean_env.setenv("BUCKET_ENDPOINT_URL", f"https://{R2_ACCOUNT}.r2.cloudflarestorage.com")
    clean_env.setenv("BUCKET_SECRET_ACCESS_KEY", "runpod-secret-value")
    with pytest.raises(Exception) as caught:
        Settings()
    described = describe_errors(caught.value)  # type: ignore[arg-type]
    assert described.startswith("BUCKET_ENDPOINT_URL: names no bucket (an R2 account endpoint never does)")
    assert "runpod-secret-value" not in described and "Value error" not in described

    clean_env.setenv("S3_BUCKET", "media-out")
    clean_env.setenv("AWS_ENDPOINT_URL", "https://s3.us-west-2.amazonaws.com")
    with pytest.raises(Exception) as caught:
        Settings()
    assert describe_errors(caught.value) == (  # type: ignore[arg-type]
        "AWS_ENDPOINT_URL and BUCKET_ENDPOINT_URL are both set and differ; set one of them"
    )
    clean_env.delenv("BUCKET_ENDPOINT_URL")
    target = Settings().storage_target()
    assert target is not None and target.endpoint_url == "https://s3.us-west-2.amazonaws.com"


def test_credentials_without_a_bucket_stay_local_with_a_warning(clean_env, tmp_path, caplog):
    clean_env.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    assert isinstance(open_storage(Settings(storage_dir=tmp_path)), LocalStorage)
    assert "S3 credentials are set but no bucket" in caplog.text


def test_empty_variables_as_the_hub_form_leaves_them_mean_unset(clean_env, tmp_path):
    for name in ("S3_BUCKET", "AWS_REGION", "AWS_ENDPOINT_URL", "BUCKET_ACCESS_KEY_ID", "BUCKET_SECRET_ACCESS_KEY"):
        clean_env.setenv(name, "")
    clean_env.setenv("BUCKET_ENDPOINT_URL", "https://media-out.s3.us-west-004.backblazeb2.com")
    target = Settings(storage_dir=tmp_path).storage_target()
    assert target is not None and (target.bucket, target.region) == ("media-out", "us-west-004")
    clean_env.setenv("BUCKET_ENDPOINT_URL", "")
    assert Settings(storage_dir=tmp_path).storage_target() is None
