"""Large payloads and results live in a blob store behind fsspec (a local directory by
default; any fsspec URL such as ``s3://bucket/farside`` with the matching package)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import fsspec

#: how much of a blob moves per read or write when it is streamed
CHUNK = 1024 * 1024


class BlobTooLarge(Exception):
    """A streamed blob went past its limit; nothing was stored."""

    def __init__(self, size: int) -> None:
        super().__init__(f"over the limit after {size} bytes")
        self.size = size


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

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], limit: int) -> int:
        """Store what ``chunks`` yields under ``key`` without holding it all in memory;
        returns its size. Over ``limit`` bytes: nothing is stored, :class:`BlobTooLarge`.

        The bytes go to a temporary name first and are renamed when complete, so a reader
        (or an upload sent again) never sees half a blob.
        """
        path = self._path(key)
        partial = f"{path}.{uuid.uuid4().hex}.partial"
        await asyncio.to_thread(self.fs.makedirs, path.rsplit("/", 1)[0], exist_ok=True)
        fh = await asyncio.to_thread(self.fs.open, partial, "wb")
        size = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise BlobTooLarge(size)
                await asyncio.to_thread(fh.write, chunk)
            await asyncio.to_thread(fh.close)
            await asyncio.to_thread(self.fs.mv, partial, path)
        except BaseException:
            await asyncio.to_thread(fh.close)
            await asyncio.to_thread(self.fs.rm, partial)
            raise
        return size

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        """The blob's bytes, ``CHUNK`` at a time (for responses that should not buffer it)."""
        fh = await asyncio.to_thread(self.fs.open, self._path(key), "rb")
        try:
            while chunk := await asyncio.to_thread(fh.read, CHUNK):
                yield chunk
        finally:
            await asyncio.to_thread(fh.close)
