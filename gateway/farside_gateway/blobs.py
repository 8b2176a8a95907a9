"""Large payloads and results live in a blob store behind fsspec (a local directory by
default; any fsspec URL such as ``s3://bucket/farside`` with the matching package)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import fsspec


class BlobStore:
    def __init__(self, url: str) -> None:
        fs, root = fsspec.core.url_to_fs(url)
        self.fs: Any = fs
        self.root = root.rstrip("/")
        self.fs.makedirs(self.root, exist_ok=True)

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    @staticmethod
    def new_key(prefix: str) -> str:
        return f"{prefix}/{uuid.uuid4().hex}"

    def put_sync(self, key: str, data: bytes) -> None:
        path = self._path(key)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(path, "wb") as fh:
            fh.write(data)

    def get_sync(self, key: str) -> bytes:
        with self.fs.open(self._path(key), "rb") as fh:
            data: bytes = fh.read()
        return data

    def size_sync(self, key: str) -> int:
        return int(self.fs.size(self._path(key)))

    def exists_sync(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def delete_sync(self, key: str) -> None:
        if self.fs.exists(self._path(key)):
            self.fs.rm(self._path(key))

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self.put_sync, key, data)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self.get_sync, key)

    async def size(self, key: str) -> int:
        return await asyncio.to_thread(self.size_sync, key)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.delete_sync, key)
