"""Where an import file is, and whether the service may read it.

A client names a file by URL; the server reads it with its own rights. So a local file (a plain
absolute path or a `file://` URL) must resolve, symlinks followed, under one of the allowed
roots (the data dir and `EMBTUNE_IMPORT_ROOTS`), and fsspec protocols that wrap another
filesystem (`zip::`, `simplecache::`, chains with `::`) are refused: through them a URL could
reach any local file. Other fsspec protocols (`s3://`, `gs://`, `memory://`) are read when
their package is installed.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import fsspec
from fsspec.core import split_protocol

from embtune.domain.imports import ImportFormat, compression_suffix, format_of

LOCAL_PROTOCOLS = (None, "file", "local")
# Protocols that open another filesystem's files (often the local one) or local repositories.
WRAPPING_PROTOCOLS = frozenset({
    "zip", "tar", "libarchive", "reference", "dir", "blockcache", "cached", "filecache",
    "simplecache", "async_wrapper", "asyncwrapper", "asynclocal", "generic", "git", "dvc",
})


class SourceError(ValueError):
    """An import URL or format the service will not read; `field` is the body field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ImportSource:
    """A readable import file: its filesystem, its path there, and how to read it."""

    url: str
    fs: Any  # fsspec.AbstractFileSystem
    path: str
    format: ImportFormat
    compression: str | None

    def size(self) -> int:
        """The file's size in bytes (0 when the filesystem does not say)."""
        return int(self.fs.size(self.path) or 0)

    def exists(self) -> bool:
        return bool(self.fs.isfile(self.path))

    def open(self) -> IO[bytes]:
        return self.fs.open(self.path, "rb")


def resolve_source(
    url: str, fmt: ImportFormat | str | None, roots: Sequence[Path] | None
) -> ImportSource:
    """The source a URL names, checked (SourceError naming `url` or `format`): protocol known
    and installed, a local path absolute and under `roots` (None: no root check, for a worker
    reading a URL the API accepted), and a format given or told by the extension."""
    if not url.strip() or "\0" in url:
        raise SourceError("url", "must be a non-empty path or URL without NUL characters")
    if "::" in url:
        raise SourceError("url", "chained fsspec URLs (a::b) are not accepted; give the file's "
                          "own URL")
    protocol, path = split_protocol(url)
    if protocol in LOCAL_PROTOCOLS:
        fs, path = _local(path, roots)
    else:
        fs = _filesystem(protocol)
        path = fs._strip_protocol(url)
    chosen = _format(url, fmt)
    compression = compression_suffix(path)
    if chosen is ImportFormat.parquet and compression:
        raise SourceError("url", f"a Parquet file cannot be compressed as a whole ({compression})"
                          "; Parquet compresses its own pages")
    return ImportSource(url=url, fs=fs, path=path, format=chosen, compression=compression)


def _local(path: str, roots: Sequence[Path] | None) -> tuple[Any, str]:
    from fsspec.implementations.local import LocalFileSystem

    if not posixpath.isabs(path):
        raise SourceError("url", "a local path must be absolute (or use a file:// URL)")
    resolved = os.path.realpath(path)
    if roots is not None and not any(_under(resolved, root) for root in roots):
        raise SourceError(
            "url", "a local file must be under the data dir or one of EMBTUNE_IMPORT_ROOTS; "
            "the server does not read other files for a client"
        )
    return LocalFileSystem(), resolved


def _under(path: str, root: Path) -> bool:
    base = os.path.realpath(root)
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def _filesystem(protocol: str) -> Any:
    if protocol in WRAPPING_PROTOCOLS:
        raise SourceError("url", f"protocol {protocol!r} wraps another filesystem and is not "
                          "accepted for imports")
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise SourceError("url", f"unknown filesystem protocol {protocol!r}") from None
    except ImportError as exc:
        raise SourceError("url", f"protocol {protocol!r} needs a package that is not "
                          f"installed: {exc}") from None
    try:
        return fsspec.filesystem(protocol)
    except Exception as exc:  # credentials or options the filesystem wants
        raise SourceError("url", f"cannot open the {protocol!r} filesystem: {exc}") from None


def _format(url: str, fmt: ImportFormat | str | None) -> ImportFormat:
    if fmt is not None:
        try:
            return ImportFormat(fmt)
        except ValueError:
            raise SourceError("format", "must be 'ndjson' or 'parquet'") from None
    told = format_of(url.split("?", 1)[0])
    if told is None:
        raise SourceError("format", "cannot tell the format from the file name (.jsonl, "
                          ".ndjson, .json(.gz) or .parquet): give `format`")
    return told


def check_readable(source: ImportSource) -> None:
    """SourceError naming `url` when the file is not there (or cannot be looked at)."""
    try:
        found = source.exists()
    except Exception as exc:  # a remote store refusing or unreachable
        raise SourceError("url", f"cannot look the file up: {exc}") from None
    if not found:
        raise SourceError("url", f"no such file: {source.url}")
