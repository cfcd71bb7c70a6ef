"""S3 sources: `s3://` URI parsing, S3 event records, and a VideoFetcher that streams an object to a local file.

Errors: a missing bucket/key/version -> VideoNotFound. 403 is also VideoNotFound (permanent), with a message that
says access was denied: S3 answers 403 for a missing key when the role lacks s3:ListBucket, so the two cannot be told
apart, and retrying either is pointless. Throttling, 5xx and dropped connections -> FetchFailed (retried).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import mimetypes
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import BotoCoreError, ClientError

from video_ai.adapters.aws import AwsClients, error_code, is_transient
from video_ai.adapters.file_artifacts import SAFE_ID, check_key
from video_ai.domain.errors import FetchFailed, InvalidRequest, SourceTooLarge, VideoNotFound
from video_ai.domain.models import S3Location, Source
from video_ai.domain.ports import FetchedVideo

CHUNK_BYTES = 1024 * 1024
STAGING_PREFIX = "staging/"
MAX_KEY_BYTES = 1024
_BUCKET_CHARS = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--table-s3")
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NoSuchBucket", "NoSuchVersion", "405", "MethodNotAllowed"})
_DENIED_CODES = frozenset({"403", "AccessDenied", "AllAccessDisabled", "InvalidObjectState"})


def bucket_name_problem(bucket: str) -> str | None:
    """Why `bucket` breaks the S3 general-purpose bucket naming rules, or None when it is valid."""
    if not 3 <= len(bucket) <= 63:
        return "must be 3 to 63 characters long"
    if not _BUCKET_CHARS.match(bucket):
        return "may hold only lowercase letters, digits, dots and hyphens, and must start and end with a letter/digit"
    if ".." in bucket:
        return "must not contain two adjacent dots"
    try:
        ipaddress.IPv4Address(bucket)
        return "must not be formatted as an IP address"
    except ValueError:
        pass
    if bucket.startswith(_RESERVED_PREFIXES) or bucket.endswith(_RESERVED_SUFFIXES):
        return "uses a prefix or suffix S3 reserves"
    return None


def parse_s3_uri(uri: str, field: str = "s3_uri") -> S3Location:
    """`s3://bucket/key` -> S3Location; the key is taken verbatim (no URL decoding), as the AWS CLI does."""
    if not uri.startswith("s3://"):
        raise InvalidRequest("must start with s3://", field=field)
    bucket, sep, key = uri[len("s3://") :].partition("/")
    if not sep or not key:
        raise InvalidRequest("must name an object: s3://bucket/key", field=field)
    problem = bucket_name_problem(bucket)
    if problem is not None:
        raise InvalidRequest(f"bucket name {bucket!r} {problem}", field=field)
    if len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidRequest(f"object key is over {MAX_KEY_BYTES} bytes", field=field)
    return S3Location(bucket=bucket, key=key)


def s3_location_from_event_record(record: Mapping[str, Any]) -> S3Location:
    """An S3 event notification record -> S3Location; keys arrive URL-encoded with spaces as '+'."""
    try:
        s3 = record["s3"]
        bucket = str(s3["bucket"]["name"])
        key = unquote_plus(str(s3["object"]["key"]))
        version = s3["object"].get("versionId")
    except (KeyError, TypeError):
        raise InvalidRequest("not an S3 event record", field="Records") from None
    if not bucket or not key:
        raise InvalidRequest("S3 event record without bucket or key", field="Records")
    return S3Location(bucket=bucket, key=key, version=str(version) if version else None)


def s3_uploads_from_notification(body: str | Mapping[str, Any]) -> list[tuple[S3Location, str | None]]:
    """Like `s3_locations_from_notification`, each with the object's ETag from the event (None when absent)."""
    data: Any = json.loads(body) if isinstance(body, str) else body
    locations = s3_locations_from_notification(data)
    records = [r for r in data.get("Records") or [] if isinstance(r, Mapping)
               and str(r.get("eventName", "ObjectCreated")).startswith("ObjectCreated")]
    etags: list[str | None] = []
    for record in records:
        etag = (record.get("s3") or {}).get("object", {}).get("eTag")
        etags.append(str(etag).strip('"') if etag else None)
    return list(zip(locations, etags, strict=True))


def s3_locations_from_notification(body: str | Mapping[str, Any]) -> list[S3Location]:
    """Objects created according to an S3 notification (an SQS body); the `s3:TestEvent` S3 sends first gives []."""
    data: Any = json.loads(body) if isinstance(body, str) else body
    if not isinstance(data, Mapping):
        raise InvalidRequest("S3 notification is not a JSON object", field="Records")
    if data.get("Event") == "s3:TestEvent":
        return []
    records = data.get("Records")
    if not isinstance(records, list):
        raise InvalidRequest("S3 notification without Records", field="Records")
    return [
        s3_location_from_event_record(r)
        for r in records
        if isinstance(r, Mapping) and str(r.get("eventName", "ObjectCreated")).startswith("ObjectCreated")
    ]


def describe_location(location: S3Location) -> str:
    where = f"s3://{location.bucket}/{location.key}"
    return f"{where} (version {location.version})" if location.version else where


def fetch_error(err: ClientError | BotoCoreError, location: S3Location) -> Exception:
    where = describe_location(location)
    if is_transient(err):
        detail = error_code(err) if isinstance(err, ClientError) else type(err).__name__
        return FetchFailed(f"{where}: S3 is unavailable ({detail}); retry later")
    if isinstance(err, ClientError):
        code = error_code(err)
        if code in _DENIED_CODES:
            return VideoNotFound(f"{where}: access denied (it may not exist, or the role may not read it)")
        if code in _NOT_FOUND_CODES or code.startswith("4"):
            return VideoNotFound(f"{where} does not exist")
        if code in ("412", "PreconditionFailed"):
            return FetchFailed(f"{where} changed while it was being downloaded; retry")
    detail = " ".join(str(err).split())[:200]
    return FetchFailed(f"{where}: download failed ({type(err).__name__}{': ' + detail if detail else ''})")


def source_location(source: Source) -> S3Location:
    if source.s3 is not None:
        return source.s3
    if source.url is not None and source.url.startswith("s3://"):
        return parse_s3_uri(source.url, field="video_url")
    raise InvalidRequest("not an S3 source", field="source")


def head_source(clients: AwsClients, source: Source) -> tuple[S3Location, dict[str, Any]]:
    """HEAD of an S3 source (the version it names, if any), errors mapped as for a download."""
    location = source_location(source)
    version: dict[str, Any] = {"VersionId": location.version} if location.version else {}
    try:
        head = dict(clients.s3.head_object(Bucket=location.bucket, Key=location.key, **version))
    except (ClientError, BotoCoreError) as err:
        raise fetch_error(err, location) from err
    return location, head


class S3Presigner:
    """VideoLinks: presigned GETs, signed locally with the function's credentials (no request to S3)."""

    def __init__(self, clients: AwsClients) -> None:
        self._clients = clients

    def presigned_get(self, location: S3Location, expires_s: int) -> str:
        params: dict[str, Any] = {"Bucket": location.bucket, "Key": location.key}
        if location.version:
            params["VersionId"] = location.version
        url: str = self._clients.s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s)
        return url

    def presigned_post(self, location: S3Location, max_bytes: int, content_type: str,
                       expires_s: int) -> tuple[str, dict[str, str]]:
        post = self._clients.s3.generate_presigned_post(
            location.bucket, location.key, Fields={"Content-Type": content_type},
            Conditions=[["content-length-range", 1, max_bytes], {"Content-Type": content_type}],
            ExpiresIn=expires_s,
        )
        return str(post["url"]), {str(k): str(v) for k, v in post["fields"].items()}


class S3SourceStager:
    """SourceStager: `s3://bucket/<prefix><job_id>/source`. No file suffix, so the uploads bucket's ObjectCreated
    filters (video suffixes) never turn a staged copy into a job; template.yaml expires the prefix after 2 days."""

    def __init__(self, clients: AwsClients, bucket: str, prefix: str = STAGING_PREFIX) -> None:
        self._clients = clients
        self.bucket = bucket
        self.prefix = prefix

    def stage(self, job_id: str, path: Path) -> Source:
        key = f"{self.prefix}{job_id}/source"
        # upload_file: multipart and parallel parts for large files (a 2 GiB source is ~20 s in-region).
        self._clients.s3.upload_file(str(path), self.bucket, key)
        return Source(s3=S3Location(bucket=self.bucket, key=key))


class S3VideoFetcher:
    """VideoFetcher for S3 objects: HEAD for the size cap, then a streamed GET pinned to the HEAD's ETag."""

    def __init__(self, clients: AwsClients, max_bytes: int) -> None:
        self._clients = clients
        self.max_bytes = max_bytes

    def fetch(self, source: Source, workdir: Path) -> FetchedVideo:
        location, head = head_source(self._clients, source)
        version: dict[str, Any] = {"VersionId": location.version} if location.version else {}
        size = int(head.get("ContentLength", 0))
        if size > self.max_bytes:
            raise SourceTooLarge(f"{describe_location(location)} is {size} bytes; the limit is {self.max_bytes}")
        # Pin the GET to what HEAD saw, so an overwrite in between fails (412) instead of slipping past the size cap.
        pin: dict[str, Any] = {"IfMatch": head["ETag"]} if head.get("ETag") and not location.version else {}
        workdir.mkdir(parents=True, exist_ok=True)
        suffix = Path(location.key).suffix
        fd, name = tempfile.mkstemp(dir=workdir, prefix="s3-", suffix=suffix if _SUFFIX.match(suffix) else "")
        path = Path(name)
        try:
            digest = hashlib.sha256()
            written = 0
            with os.fdopen(fd, "wb") as out:
                try:
                    response = self._clients.s3.get_object(
                        Bucket=location.bucket, Key=location.key, **version, **pin
                    )
                    for chunk in response["Body"].iter_chunks(CHUNK_BYTES):
                        written += len(chunk)
                        if written > self.max_bytes:
                            raise SourceTooLarge(
                                f"{describe_location(location)} is over the limit of {self.max_bytes} bytes"
                            )
                        digest.update(chunk)
                        out.write(chunk)
                except (ClientError, BotoCoreError) as err:
                    raise fetch_error(err, location) from err
            if written != size:
                raise FetchFailed(f"{describe_location(location)}: got {written} bytes, expected {size}")
            etag = str(head["ETag"]) if head.get("ETag") else None
            return FetchedVideo(path=path, sha256=digest.hexdigest(), size_bytes=written, etag=etag)
        except BaseException:
            path.unlink(missing_ok=True)
            raise


THUMBNAILS_PREFIX = "thumbnails/"
ARTIFACTS_PREFIX = "artifacts/"


class S3Artifacts:
    """ArtifactStore in the uploads bucket under artifacts/<job_id>/<name> (deployed: a worker's disk is its own, and
    a transcript may pass DynamoDB's 400 KB item limit). No video suffix, so the bucket's ObjectCreated filters never
    turn one into a job."""

    def __init__(self, clients: AwsClients, bucket: str, prefix: str = ARTIFACTS_PREFIX) -> None:
        self._clients = clients
        self.bucket = bucket
        self.prefix = prefix

    def _key(self, job_id: str, name: str) -> str:
        check_key(job_id, name)
        return f"{self.prefix}{job_id}/{name}"

    def put(self, job_id: str, name: str, data: bytes) -> None:
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self._clients.s3.put_object(Bucket=self.bucket, Key=self._key(job_id, name), Body=data,
                                    ContentType=content_type)

    def get(self, job_id: str, name: str) -> bytes | None:
        try:
            key = self._key(job_id, name)
        except ValueError:
            return None
        try:
            response = self._clients.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        body: bytes = response["Body"].read()
        return body

    def _keys(self, job_id: str) -> list[str]:
        if not SAFE_ID.fullmatch(job_id):
            return []
        keys: list[str] = []
        paginator = self._clients.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}{job_id}/"):
            keys.extend(str(item["Key"]) for item in page.get("Contents", []))
        return keys

    def copy(self, from_job: str, to_job: str) -> int:
        if not SAFE_ID.fullmatch(to_job):
            return 0
        keys = self._keys(from_job)
        for key in keys:
            self._clients.s3.copy_object(Bucket=self.bucket, Key=key.replace(f"/{from_job}/", f"/{to_job}/", 1),
                                         CopySource={"Bucket": self.bucket, "Key": key})
        return len(keys)

    def delete(self, job_id: str) -> None:
        keys = self._keys(job_id)
        for start in range(0, len(keys), 1000):
            self._clients.s3.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True})


class S3Thumbnails:
    """ThumbnailStore in the uploads bucket under thumbnails/<job_id>/<index>.jpg (the page reads them one by one)."""

    def __init__(self, clients: AwsClients, bucket: str, prefix: str = THUMBNAILS_PREFIX) -> None:
        self._objects = S3Artifacts(clients, bucket, prefix)
        self.bucket = bucket
        self.prefix = prefix

    def put(self, job_id: str, index: int, jpeg: bytes) -> None:
        self._objects.put(job_id, f"{int(index)}.jpg", jpeg)

    def get(self, job_id: str, index: int) -> bytes | None:
        return self._objects.get(job_id, f"{index}.jpg") if index >= 0 else None

    def copy(self, from_job: str, to_job: str) -> int:
        return self._objects.copy(from_job, to_job)

    def delete(self, job_id: str) -> None:
        self._objects.delete(job_id)
