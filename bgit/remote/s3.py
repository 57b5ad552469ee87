"""The S3 payload store (boto3). ``s3://bucket/prefix`` -> keys ``prefix/ab/cdef...``.

Credentials come only from the environment or the standard AWS configuration (boto3's
default chain) and are never written into the repository. The endpoint can be pointed
at any S3-compatible server with ``BGIT_S3_ENDPOINT_URL`` (or boto3's own
``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from .stores import (OID_RE, FileAbsentError, ObjectAbsentError, ObjectTooLargeError,
                     StoreRemote, StoreRemoteError, StoreUnreachableError, check_oid)

HEAD_WORKERS = 16


class S3StoreRemote(StoreRemote):
    def __init__(self, url: str) -> None:
        super().__init__()
        parts = urlsplit(url)
        self.url = url
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self._client = None
        self._lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------------------

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                endpoint = os.environ.get("BGIT_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
                config = Config(max_pool_connections=32, connect_timeout=10, read_timeout=120,
                                retries={"max_attempts": 3, "mode": "standard"})
                self._client = boto3.session.Session().client("s3", endpoint_url=endpoint or None,
                                                              config=config)
            return self._client

    def _key(self, oid: str) -> str:
        check_oid(oid)
        return self._file_key(f"{oid[:2]}/{oid[2:]}")

    def _file_key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def _call(self, fn, **kwargs):
        """Run one S3 call, turning boto errors into one-line bgit errors."""
        from botocore.exceptions import (BotoCoreError, ClientError, EndpointConnectionError,
                                         NoCredentialsError, ConnectTimeoutError)
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except (EndpointConnectionError, ConnectTimeoutError) as e:
            raise StoreUnreachableError(self.url, str(e)) from None
        except NoCredentialsError:
            raise StoreRemoteError(
                f"no AWS credentials for {self.url} (set AWS_ACCESS_KEY_ID and "
                f"AWS_SECRET_ACCESS_KEY, or configure ~/.aws)") from None
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code == "InvalidRange":
                return None  # a range past the end of the object: nothing there
            if code in ("NoSuchKey", "404", "NotFound") and "Key" in kwargs:
                raise ObjectAbsentError(kwargs["Key"].replace("/", "")[-64:]) from None
            if code == "NoSuchBucket" or (code in ("404", "NotFound") and "Key" not in kwargs):
                raise StoreRemoteError(f"S3 bucket '{self.bucket}' does not exist ({self.url})") from None
            raise StoreRemoteError(f"S3 {code or 'error'} on {self.url}: "
                                   f"{e.response.get('Error', {}).get('Message', e)}") from None
        except BotoCoreError as e:
            raise StoreRemoteError(f"S3 error on {self.url}: {e}") from None

    # -- the interface ---------------------------------------------------------------------

    def check(self) -> None:
        self._call(self.client.head_bucket)

    def _has(self, oid: str) -> bool:
        try:
            self._call(self.client.head_object, Key=self._key(oid))
            return True
        except ObjectAbsentError:
            return False

    def _has_loose(self, oids):
        if len(oids) <= 1:
            return {o for o in oids if self._has(o)}
        with ThreadPoolExecutor(min(HEAD_WORKERS, len(oids))) as pool:
            return {o for o, present in zip(oids, pool.map(self._has, oids)) if present}

    def _get_loose(self, oid, max_bytes):
        response = self._call(self.client.get_object, Key=self._key(oid))
        body = response["Body"]
        try:
            if max_bytes is None:
                return body.read()
            if response.get("ContentLength", 0) > max_bytes:
                raise ObjectTooLargeError(oid, max_bytes)
            raw = body.read(max_bytes + 1)
            if len(raw) > max_bytes:
                raise ObjectTooLargeError(oid, max_bytes)
            return raw
        finally:
            body.close()

    def _list(self, prefix: str) -> list[str]:
        """The keys under ``prefix``, relative to it."""
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call(lambda **kw: list(paginator.paginate(**kw)), Prefix=prefix)
        return [item["Key"][len(prefix):] for page in pages for item in page.get("Contents", [])]

    def _list_loose(self):
        for key in self._list(f"{self.prefix}/" if self.prefix else ""):
            oid = key.replace("/", "")
            if OID_RE.match(oid):
                yield oid

    def _list_files(self, folder):
        return [key for key in self._list(self._file_key(folder) + "/") if "/" not in key]

    def _read_file(self, path, offset, length):
        if length <= 0:
            return b""
        try:
            response = self._call(self.client.get_object, Key=self._file_key(path),
                                  Range=f"bytes={offset}-{offset + length - 1}")
        except ObjectAbsentError:
            raise FileAbsentError(f"{path} is not on payload store {self.url}") from None
        if response is None:
            return b""
        body = response["Body"]
        try:
            return body.read(length)
        finally:
            body.close()

    def _write_file(self, path, data):
        self._call(self.client.put_object, Key=self._file_key(path), Body=data)
