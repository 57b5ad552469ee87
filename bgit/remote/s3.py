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

from .stores import (OID_RE, ObjectAbsentError, ObjectTooLargeError, StoreRemote,
                     StoreRemoteError, StoreUnreachableError, check_oid)

HEAD_WORKERS = 16


class S3StoreRemote(StoreRemote):
    def __init__(self, url: str) -> None:
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
        name = f"{oid[:2]}/{oid[2:]}"
        return f"{self.prefix}/{name}" if self.prefix else name

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

    def has_many(self, oids):
        oids = list(oids)
        if len(oids) <= 1:
            return {o for o in oids if self._has(o)}
        with ThreadPoolExecutor(min(HEAD_WORKERS, len(oids))) as pool:
            return {o for o, present in zip(oids, pool.map(self._has, oids)) if present}

    def put(self, oid, raw):
        self._call(self.client.put_object, Key=self._key(oid), Body=raw)

    def get(self, oid, max_bytes=None):
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

    def list(self):
        paginator = self.client.get_paginator("list_objects_v2")
        prefix = f"{self.prefix}/" if self.prefix else ""
        pages = self._call(lambda **kw: list(paginator.paginate(**kw)), Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                oid = item["Key"][len(prefix):].replace("/", "")
                if OID_RE.match(oid):
                    yield oid
