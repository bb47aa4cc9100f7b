"""Bounded HTTP(S) downloads for IIIF sources.

Every download is limited three ways before or while it happens: only ``http`` and
``https`` URLs (redirects included — a redirect to ``file:``, ``ftp:`` or anything else is
refused), at most ``max_bytes`` bytes (the announced ``Content-Length`` is checked before
the body is read, and the body is read in chunks and abandoned one byte past the limit),
and at most ``timeout_s`` seconds of wall time for the whole request (each socket read
waits at most the time that is left). The byte limit defaults to the upload limit of
:func:`inkapp.data.images.effective_max_bytes` (``INKAPP_MAX_UPLOAD_MB``, else 50 MiB).
"""
from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from inkapp import __version__
from inkapp.data.images import effective_max_bytes

ALLOWED_SCHEMES: tuple[str, ...] = ("http", "https")
DEFAULT_TIMEOUT_S = 30.0  # whole request, seconds
MAX_REDIRECTS = 5
_CHUNK = 64 * 1024
_USER_AGENT = f"inkapp/{__version__} (IIIF client)"


class SourceError(ValueError):
    """A SOURCE (file, URL, manifest) cannot be opened; ``str()`` is a one-line message."""


@dataclass(frozen=True)
class Fetched:
    """A completed download: the final URL (after redirects), its content type (lower
    case, parameters removed; ``""`` if none was sent) and the body."""

    url: str
    content_type: str
    data: bytes


def check_url(url: str) -> str:
    """Return ``url`` if it is an absolute http(s) URL with a host, else raise :class:`SourceError`."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        shown = parts.scheme or "none"
        raise SourceError(f"only http and https URLs can be opened (scheme {shown!r} in {url!r})")
    if not parts.hostname:
        raise SourceError(f"URL has no host: {url!r}")
    return url


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def _connection(parts: urllib.parse.SplitResult, timeout_s: float) -> http.client.HTTPConnection:
    cls = http.client.HTTPSConnection if parts.scheme.lower() == "https" else http.client.HTTPConnection
    return cls(parts.hostname, parts.port, timeout=timeout_s)


def fetch(url: str, *, max_bytes: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
          accept: str = "*/*") -> Fetched:
    """GET ``url`` within the limits described in the module docstring, following at most
    :data:`MAX_REDIRECTS` redirects (each checked by :func:`check_url`).

    Raises:
        SourceError: a non-http(s) URL or redirect, an HTTP error status, an unreachable
            host, a body larger than ``max_bytes`` or a request slower than ``timeout_s``.
    """
    limit = effective_max_bytes(max_bytes)
    deadline = time.monotonic() + timeout_s
    current = check_url(url)
    try:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(current)
            conn = _connection(parts, timeout_s)
            try:
                path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
                conn.request("GET", path, headers={"User-Agent": _USER_AGENT, "Accept": accept,
                                                   "Accept-Encoding": "identity"})
                sock = conn.sock  # kept: getresponse() drops conn.sock when the server closes after the body
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                response = conn.getresponse()
                if response.status in (301, 302, 303, 307, 308):
                    location = response.getheader("Location")
                    if not location:
                        raise SourceError(f"{current}: HTTP {response.status} redirect without a Location")
                    current = check_url(urllib.parse.urljoin(current, location))
                    continue
                if response.status != 200:
                    raise SourceError(f"{current}: HTTP {response.status} {response.reason}")
                announced = response.getheader("Content-Length")
                if announced is not None and announced.strip().isdigit() and int(announced) > limit:
                    raise SourceError(f"{current}: response is too large ({_mib(int(announced))}; "
                                      f"limit {_mib(limit)})")
                chunks: list[bytes] = []
                size = 0
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    sock.settimeout(left)  # each read waits at most the time that is left
                    chunk = response.read1(_CHUNK)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > limit:
                        raise SourceError(f"{current}: response is too large (more than {_mib(limit)})")
                message = response.msg
                content_type = message.get_content_type() if message.get("Content-Type") else ""
                return Fetched(current, content_type.lower(), b"".join(chunks))
            finally:
                conn.close()
        raise SourceError(f"{url}: more than {MAX_REDIRECTS} redirects")
    except SourceError:
        raise
    except (TimeoutError, socket.timeout):
        raise SourceError(f"{current}: no complete answer within {timeout_s:g} s") from None
    except (OSError, http.client.HTTPException, ValueError) as e:  # refused, reset, bad status line ...
        raise SourceError(f"{current}: download failed ({type(e).__name__}: {e})") from None


def fetch_json(url: str, *, max_bytes: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """GET ``url`` and parse its body as a JSON object (:class:`SourceError` otherwise)."""
    got = fetch(url, max_bytes=max_bytes, timeout_s=timeout_s,
                accept="application/ld+json, application/json;q=0.9, */*;q=0.1")
    return parse_json_object(got.data, url)


def parse_json_object(data: bytes, url: str) -> dict[str, Any]:
    """``data`` decoded as a JSON object, or :class:`SourceError` naming ``url``."""
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SourceError(f"{url}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise SourceError(f"{url}: expected a JSON object, got {type(doc).__name__}")
    return doc
