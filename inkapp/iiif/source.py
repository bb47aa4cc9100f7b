"""Open a SOURCE — a file, an IIIF Image API URL or an IIIF Presentation 3 manifest URL —
as the images a model classifies.

Accepted SOURCE forms (see :func:`open_source`):

* a path to an image file (read with the upload limits of :mod:`inkapp.data.images`);
* an IIIF Image API 2 or 3 URL: the image service base (``…/{identifier}``), its
  ``…/info.json`` or any image request ``…/{region}/{size}/{rotation}/{quality}.{format}``
  (its region is kept, the rest is replaced);
* an IIIF Presentation 3 manifest URL: every canvas becomes one item;
* any other http(s) URL answering with an image (fetched whole, within the byte limit).

A URL may end in a media fragment ``#xywh=x,y,w,h`` (integers, full-resolution pixels)
selecting a region of an image service, e.g. one character of a rubbing.

The Image API is asked for the region at the size the model needs, never the master:
size ``!S,S`` (longest side S, aspect kept) when the region is larger than S, else
``max`` (``full`` for Image API 2) so no server is asked to upscale. A level-0 service
(a static tile set) serves only the sizes listed in its ``info.json``: the smallest
listed size whose longest side is at least S is taken (the largest when none is), and
regions are refused. Every download is bounded by :func:`inkapp.iiif.fetch.fetch`
(http(s) only, byte limit, whole-request time limit).

Coordinates: an item's ``region`` and :meth:`SourceItem.box_in_target` are in the
*target's* coordinate space — the canvas's for manifest items (canvas width/height),
the full image's for Image API sources, the decoded file's for files. Painting
annotations that place an image on only part of a canvas (``target`` with ``#xywh``)
are treated as covering the whole canvas.
"""
from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from inkapp.data.images import ImageError, decode_image

from .fetch import DEFAULT_TIMEOUT_S, SourceError, check_url, fetch, fetch_json, parse_json_object

DEFAULT_SIZE = 512  # px, longest side requested when the caller does not say
MAX_CANVASES = 500  # items one manifest may produce
IMAGE_CONTEXT = "http://iiif.io/api/image/"
PRESENTATION_3_CONTEXT = "http://iiif.io/api/presentation/3/context.json"

_XYWH = re.compile(r"xywh=(?:pixel:)?(\d+),(\d+),(\d+),(\d+)")
_REGION = r"full|square|pct:[\d.]+,[\d.]+,[\d.]+,[\d.]+|\d+,\d+,\d+,\d+"
_IMAGE_REQUEST = re.compile(
    rf"^(?P<base>.+)/(?P<region>{_REGION})/(?P<size>[^/]+)/(?P<rotation>!?[\d.]+)/(?P<quality>\w+)\.(?P<format>\w+)$")


@dataclass(frozen=True)
class SourceItem:
    """One image to classify, opened from a SOURCE.

    * ``source`` — the SOURCE string as given;
    * ``name`` — file name, canvas label (first value of its language map) or image identifier;
    * ``target`` — the IRI an annotation of this item targets, without fragment: the
      canvas id (manifests), the full-image request ``{service}/full/max/0/default.jpg``
      (Image API sources; ``full/full`` for version 2), the URL (other images), or the
      absolute ``file:`` URI of a file;
    * ``image`` — the decoded image (8-bit RGB or L), at most about the requested size
      on its longest side when it came through the Image API, full size otherwise;
    * ``data`` — the bytes read or downloaded (e.g. for a SHA-256);
    * ``region`` — x, y, w, h of the fetched part in target coordinates, or None when
      the item is the whole target;
    * ``target_size`` — the target's width, height in its own coordinates (canvas size,
      full image size, or the decoded file's size).
    """

    source: str
    name: str
    target: str
    image: Image.Image
    data: bytes
    region: tuple[int, int, int, int] | None
    target_size: tuple[int, int]

    def box_in_target(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """A box x, y, w, h in ``image`` pixels -> the same box in target coordinates
        (scaled by region size / image size, shifted by the region's origin, rounded)."""
        rx, ry, rw, rh = self.region or (0, 0, *self.target_size)
        sx, sy = rw / self.image.width, rh / self.image.height
        x, y, w, h = box
        return round(rx + x * sx), round(ry + y * sy), round(w * sx), round(h * sy)

    @property
    def target_with_region(self) -> str:
        """``target`` plus ``#xywh=x,y,w,h`` when the item is a region of it."""
        return self.target if self.region is None else f"{self.target}#xywh={','.join(map(str, self.region))}"


@dataclass(frozen=True)
class _Service:
    """An IIIF Image API service as described by its info.json."""

    base: str
    version: int  # 2 or 3
    width: int
    height: int
    level0: bool
    sizes: tuple[tuple[int, int], ...]

    @property
    def full_image(self) -> str:
        return f"{self.base}/full/{'max' if self.version == 3 else 'full'}/0/default.jpg"


def is_url(source: str) -> bool:
    """True when ``source`` looks like a URL (``scheme://``) rather than a file path."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", source) is not None


def _split_fragment(url: str) -> tuple[str, tuple[int, int, int, int] | None]:
    base, _, fragment = url.partition("#")
    if not fragment:
        return base, None
    m = _XYWH.fullmatch(fragment)
    if m is None:
        raise SourceError(f"unsupported URL fragment #{fragment} (expected #xywh=x,y,w,h in whole pixels)")
    x, y, w, h = (int(v) for v in m.groups())
    if w < 1 or h < 1:
        raise SourceError(f"empty region #{fragment} (width and height must be positive)")
    return base, (x, y, w, h)


def _first_string(value: Any) -> str:
    """First string of an IIIF language map / plain string / list; ``""`` if none."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for texts in value.values():
            found = _first_string(texts)
            if found:
                return found
    if isinstance(value, list):
        for v in value:
            found = _first_string(v)
            if found:
                return found
    return ""


def _contexts(doc: dict[str, Any]) -> list[str]:
    ctx = doc.get("@context", [])
    return [c for c in (ctx if isinstance(ctx, list) else [ctx]) if isinstance(c, str)]


def _is_image_info(doc: dict[str, Any]) -> bool:
    kind = str(doc.get("type") or doc.get("@type") or "")
    return (kind.startswith("ImageService") or doc.get("protocol") == "http://iiif.io/api/image"
            or any(c.startswith(IMAGE_CONTEXT) for c in _contexts(doc)))


def _positive_int(value: Any, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SourceError(f"{where}: {what} must be a positive integer, got {value!r}")
    return value


def _service_from_info(info: dict[str, Any], url: str) -> _Service:
    """Parse an Image API 2/3 info.json fetched from ``url``."""
    kind = str(info.get("type") or info.get("@type") or "")
    contexts = _contexts(info)
    if kind == "ImageService3" or any("/image/3" in c for c in contexts):
        version = 3
    elif kind == "ImageService2" or any("/image/2" in c for c in contexts):
        version = 2
    else:
        raise SourceError(f"{url}: not an IIIF Image API 2 or 3 info.json (type {kind or 'missing'})")
    base = info.get("id") if version == 3 else info.get("@id")
    if not isinstance(base, str) or not base:
        base = url[: -len("/info.json")] if url.endswith("/info.json") else url
    check_url(base)
    profile = info.get("profile")
    profiles = profile if isinstance(profile, list) else [profile]
    level0 = any(isinstance(p, str) and p.rstrip("/").endswith(("level0", "level0.json")) for p in profiles)
    sizes = tuple((s["width"], s["height"]) for s in info.get("sizes") or []
                  if isinstance(s, dict) and isinstance(s.get("width"), int) and isinstance(s.get("height"), int))
    return _Service(base.rstrip("/"), version, _positive_int(info.get("width"), "width", url),
                    _positive_int(info.get("height"), "height", url), level0, sizes)


def _request_url(service: _Service, region: tuple[int, int, int, int] | None, size: int) -> str:
    """The Image API request for ``region`` (full image when None) at ``size`` px (longest side)."""
    if region is not None:
        x, y, w, h = region
        if x >= service.width or y >= service.height:
            raise SourceError(f"region x={x}, y={y} lies outside the {service.width}×{service.height} image")
        w, h = min(w, service.width - x), min(h, service.height - y)
        region = (x, y, w, h)
    if service.level0:
        if region is not None:
            raise SourceError(f"{service.base}: a level-0 (static) image service cannot serve regions")
        if not service.sizes:
            raise SourceError(f"{service.base}: level-0 image service lists no sizes in its info.json")
        big_enough = [s for s in service.sizes if max(s) >= size]
        w, h = min(big_enough, key=max) if big_enough else max(service.sizes, key=max)
        return f"{service.base}/full/{w},{h if service.version == 3 else ''}/0/default.jpg"
    rw, rh = (service.width, service.height) if region is None else region[2:]
    full = "max" if service.version == 3 else "full"
    size_part = full if max(rw, rh) <= size else f"!{size},{size}"
    region_part = "full" if region is None else ",".join(map(str, region))
    return f"{service.base}/{region_part}/{size_part}/0/default.jpg"


class _Opener:
    """Downloads and decodes within one set of limits."""

    def __init__(self, size: int, timeout_s: float, max_bytes: int | None, max_items: int) -> None:
        if size < 8:
            raise ValueError(f"size must be at least 8 px, got {size}")
        self.size, self.timeout_s, self.max_bytes, self.max_items = size, timeout_s, max_bytes, max_items

    def json(self, url: str) -> dict[str, Any]:
        return fetch_json(url, max_bytes=self.max_bytes, timeout_s=self.timeout_s)

    def image(self, url: str) -> tuple[Image.Image, bytes]:
        got = fetch(url, max_bytes=self.max_bytes, timeout_s=self.timeout_s, accept="image/*")
        try:
            image, _ = decode_image(got.data, max_bytes=self.max_bytes)
        except ImageError as e:
            raise SourceError(f"{url}: {e}") from None
        return image, got.data

    def service_info(self, base: str) -> _Service:
        url = base if base.endswith("/info.json") else base.rstrip("/") + "/info.json"
        return _service_from_info(self.json(url), url)

    def from_service(self, source: str, service: _Service, region: tuple[int, int, int, int] | None,
                     name: str, target: str | None = None, target_size: tuple[int, int] | None = None) -> SourceItem:
        image, data = self.image(_request_url(service, region, self.size))
        if region is not None:  # clipped to the image like the request
            x, y, w, h = region
            region = (x, y, min(w, service.width - x), min(h, service.height - y))
        return SourceItem(source=source, name=name, target=target or service.full_image, image=image, data=data,
                          region=region, target_size=target_size or (service.width, service.height))

    def manifest(self, source: str, doc: dict[str, Any], url: str) -> list[SourceItem]:
        kind = doc.get("type") or doc.get("@type")
        if kind == "sc:Manifest" or any("/presentation/2" in c for c in _contexts(doc)):
            raise SourceError(f"{url}: IIIF Presentation 2 manifest; only Presentation 3 manifests are supported")
        if kind != "Manifest":
            raise SourceError(f"{url}: not an IIIF manifest or image (JSON type {kind!r})")
        canvases = doc.get("items")
        if not isinstance(canvases, list) or not canvases:
            raise SourceError(f"{url}: manifest has no canvases (its 'items' must be a non-empty list)")
        if len(canvases) > self.max_items:
            raise SourceError(f"{url}: manifest has {len(canvases)} canvases; at most {self.max_items} are opened")
        return [self.canvas(source, c, f"{url} canvas {i + 1}") for i, c in enumerate(canvases)]

    def canvas(self, source: str, canvas: Any, where: str) -> SourceItem:
        if not isinstance(canvas, dict) or canvas.get("type") != "Canvas":
            raise SourceError(f"{where}: not a Canvas object")
        canvas_id = canvas.get("id")
        if not isinstance(canvas_id, str) or not canvas_id:
            raise SourceError(f"{where}: canvas has no 'id'")
        body = _painting_image(canvas, where)
        name = _first_string(canvas.get("label")) or canvas_id.rstrip("/").rsplit("/", 1)[-1]
        cw, ch = canvas.get("width"), canvas.get("height")
        service_ref = _image_service_ref(body)
        if service_ref is not None:
            service = self.service_info(service_ref)
            size = ((_positive_int(cw, "canvas width", where), _positive_int(ch, "canvas height", where))
                    if cw is not None or ch is not None else (service.width, service.height))
            return self.from_service(source, service, None, name, canvas_id, size)
        image_url = body.get("id")
        if not isinstance(image_url, str) or not image_url:
            raise SourceError(f"{where}: painting annotation's image has no 'id' and no image service")
        image, data = self.image(check_url(image_url))
        size = ((_positive_int(cw, "canvas width", where), _positive_int(ch, "canvas height", where))
                if cw is not None or ch is not None else image.size)
        return SourceItem(source=source, name=name, target=canvas_id, image=image, data=data, region=None,
                          target_size=size)


def _painting_image(canvas: dict[str, Any], where: str) -> dict[str, Any]:
    """The first Image body painted on ``canvas`` (a Choice gives its first item)."""
    for page in canvas.get("items") or []:
        for anno in (page.get("items") or []) if isinstance(page, dict) else []:
            if not isinstance(anno, dict) or anno.get("motivation") != "painting":
                continue
            bodies = anno.get("body")
            for body in bodies if isinstance(bodies, list) else [bodies]:
                if isinstance(body, dict) and body.get("type") == "Choice":
                    body = next(iter(body.get("items") or []), None)
                if isinstance(body, dict) and body.get("type") == "Image":
                    return body
    raise SourceError(f"{where}: canvas paints no image (no 'painting' annotation with an Image body)")


def _image_service_ref(body: dict[str, Any]) -> str | None:
    """URL of the first IIIF Image API service of an Image body, if any."""
    services = body.get("service") or []
    for s in services if isinstance(services, list) else [services]:
        if not isinstance(s, dict):
            continue
        kind = str(s.get("type") or s.get("@type") or "")
        profile = str(s.get("profile") or "")
        ref = s.get("id") or s.get("@id")
        if isinstance(ref, str) and (kind.startswith("ImageService") or "iiif.io/api/image" in profile):
            return ref
    return None


def open_source(source: str, size: int = DEFAULT_SIZE, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                max_bytes: int | None = None, max_items: int = MAX_CANVASES) -> list[SourceItem]:
    """Open ``source`` (a file path or a URL, see the module docstring) as a list of items.

    ``size`` — longest side in pixels to request from an Image API (the model's input
    size, e.g. ``predictor.preprocessor.size``); ``timeout_s`` — wall-time limit of each
    download; ``max_bytes`` — byte limit of each download or file (default
    ``INKAPP_MAX_UPLOAD_MB`` or 50 MiB); ``max_items`` — most canvases one manifest may
    give. A file or image URL gives one item, a manifest one item per canvas in order.

    Raises:
        SourceError: (a ValueError) with a one-line message for any unusable source — a
            non-http(s) URL, a download over a limit, a malformed manifest or info.json,
            an image that does not decode.
    """
    opener = _Opener(size, timeout_s, max_bytes, max_items)
    if not is_url(source):
        return [_open_file(source, max_bytes)]
    url, region = _split_fragment(source)
    check_url(url)
    request = _IMAGE_REQUEST.match(urllib.parse.urlsplit(url).path)
    if request is not None and not url.endswith("/info.json"):
        base = url[: len(url) - len(urllib.parse.urlsplit(url).path)] + request.group("base")
        if region is None and re.fullmatch(r"\d+,\d+,\d+,\d+", request.group("region")):
            region = tuple(int(v) for v in request.group("region").split(","))  # type: ignore[assignment]
        service = opener.service_info(base)
        return [opener.from_service(source, service, region, _identifier(service.base))]
    got = fetch(url, max_bytes=max_bytes, timeout_s=timeout_s,
                accept="application/ld+json, application/json;q=0.9, image/*;q=0.8")
    if got.content_type.startswith("image/"):
        if region is not None:
            raise SourceError(f"{url}: #xywh regions need an IIIF Image API URL, not a plain image")
        try:
            image, _ = decode_image(got.data, max_bytes=max_bytes)
        except ImageError as e:
            raise SourceError(f"{url}: {e}") from None
        return [SourceItem(source, _identifier(url), url, image, got.data, None, image.size)]
    doc = parse_json_object(got.data, got.url)
    if _is_image_info(doc):
        service = _service_from_info(doc, got.url)
        return [opener.from_service(source, service, region, _identifier(service.base))]
    if region is not None:
        raise SourceError(f"{url}: #xywh regions apply to an image service, not to a manifest")
    return opener.manifest(source, doc, got.url)


def _identifier(url: str) -> str:
    return urllib.parse.unquote(url.rstrip("/").rsplit("/", 1)[-1]) or url


def _open_file(path: str, max_bytes: int | None) -> SourceItem:
    p = Path(path)
    try:
        image, _ = decode_image(p, max_bytes=max_bytes)  # checks the size before reading
        data = p.read_bytes()
    except ImageError as e:
        raise SourceError(f"{path}: {e}") from None
    except OSError as e:
        raise SourceError(f"{path}: cannot read file ({e.strerror or e})") from None
    return SourceItem(path, p.name, p.resolve().as_uri(), image, data, None, image.size)
