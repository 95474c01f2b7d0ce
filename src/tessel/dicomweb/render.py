"""Rendered images (PS3.18 8.3.5.1.3, 9.4): a decoded frame to 8-bit JPEG or PNG.

Grey frames go through the Modality LUT (Rescale Slope/Intercept) and a VOI
window: the request's `window=center,width[,LINEAR|LINEAR_EXACT|SIGMOID]`, else
the instance's first Window Center/Width, else the frame's range; MONOCHROME1
is inverted. Colour frames are shown as RGB (YBR_FULL converted, palette colour
looked up). `viewport=width,height` (and thumbnails) scale down to fit, keeping
the aspect ratio.

>>> import numpy as np
>>> window(np.array([0.0, 40.0, 80.0]), 40, 80, "LINEAR").tolist()
[0, 129, 255]
"""

from __future__ import annotations

import base64
from typing import Any

import imagecodecs
import numpy as np
import numpy.typing as npt

from tessel.dicomweb.wado import parse_accept
from tessel.errors import InvalidInput, Unsupported

JPEG = "image/jpeg"
PNG = "image/png"
MEDIA_TYPES = (JPEG, PNG)
THUMBNAIL = 128
Array = npt.NDArray[Any]


def parse_window(text: str | None) -> tuple[float, float, str] | None:
    if not text:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise InvalidInput("window is center,width[,function]")
    try:
        center, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise InvalidInput(f"window center and width must be numbers, not {text!r}") from None
    function = parts[2].upper() if len(parts) == 3 else "LINEAR"
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        raise InvalidInput(f"window function {function!r} is not LINEAR, LINEAR_EXACT or SIGMOID")
    if width <= 0 or (function == "LINEAR" and width < 1):
        raise InvalidInput("window width must be positive (at least 1 for LINEAR)")
    return center, width, function


def parse_viewport(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        width, height = int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        raise InvalidInput("viewport is width,height in pixels") from None
    if not (0 < width <= 8192 and 0 < height <= 8192):
        raise InvalidInput("viewport dimensions must be between 1 and 8192")
    return width, height


def window(values: Array, center: float, width: float, function: str) -> Array:
    """PS3.3 C.11.2.1.2 VOI LUT functions, output 0..255."""
    if function == "LINEAR_EXACT":
        out = ((values - center) / width + 0.5) * 255.0
    elif function == "SIGMOID":
        out = 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    else:
        c, w = center - 0.5, width - 1.0
        out = np.where(values <= c - w / 2, 0.0,
                       np.where(values > c + w / 2, 255.0, ((values - c) / max(w, 1e-9) + 0.5) * 255.0))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _first(value: Any) -> float | None:
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return float(str(value).strip()) if value not in (None, "") else None
    except ValueError:
        return None


def _grey(pixels: Array, attrs: dict[str, Any], request_window: tuple[float, float, str] | None) -> Array:
    slope = _first(attrs.get("RescaleSlope")) or 1.0
    intercept = _first(attrs.get("RescaleIntercept")) or 0.0
    values = pixels.astype(np.float64) * slope + intercept
    if request_window is not None:
        center, width, function = request_window
    else:
        center_value, width_value = _first(attrs.get("WindowCenter")), _first(attrs.get("WindowWidth"))
        function = str(attrs.get("VOILUTFunction") or "LINEAR").strip().upper()
        if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
            function = "LINEAR"
        if center_value is None or width_value is None or width_value <= 0:
            low, high = float(values.min()), float(values.max())
            center_value, width_value, function = (low + high) / 2, max(high - low, 1.0), "LINEAR_EXACT"
        center, width = center_value, width_value
    out = window(values, center, width, function)
    if str(attrs.get("PhotometricInterpretation") or "").strip() == "MONOCHROME1":
        out = 255 - out
    return out


def _ybr_to_rgb(arr: Array) -> Array:
    ybr = arr.astype(np.float64)
    y, cb, cr = ybr[..., 0], ybr[..., 1] - 128.0, ybr[..., 2] - 128.0
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _palette(pixels: Array, attrs: dict[str, Any]) -> Array:
    channels = []
    for colour in ("Red", "Green", "Blue"):
        descriptor = attrs.get(f"{colour}PaletteColorLookupTableDescriptor")
        data = attrs.get(f"{colour}PaletteColorLookupTableData")
        if not isinstance(descriptor, list) or len(descriptor) != 3 or not isinstance(data, str):
            raise InvalidInput("the palette colour lookup tables are not available for rendering")
        entries, first, bits = int(descriptor[0]) or 65536, int(descriptor[1]), int(descriptor[2])
        raw = base64.b64decode(data)
        lut = np.frombuffer(raw, dtype="<u2" if bits > 8 or len(raw) >= 2 * entries else "u1")[:entries]
        index = np.clip(pixels.astype(np.int64) - first, 0, len(lut) - 1)
        values = lut[index].astype(np.float64)
        channels.append(values / ((1 << bits) - 1) * 255.0 if bits > 8 else values)
    return np.clip(np.rint(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)


def to_8bit(pixels: Array, attrs: dict[str, Any], photometric: str,
            request_window: tuple[float, float, str] | None = None) -> Array:
    """A decoded frame as 8-bit grey (H, W) or RGB (H, W, 3) for display."""
    if photometric == "PALETTE COLOR":
        return _palette(pixels, attrs)
    if pixels.ndim == 2:
        return _grey(pixels, {**attrs, "PhotometricInterpretation": photometric}, request_window)
    arr = pixels
    if arr.dtype != np.uint8:
        bits = int(attrs.get("BitsStored") or 8)
        arr = np.clip(arr.astype(np.float64) / ((1 << bits) - 1) * 255.0, 0, 255).astype(np.uint8)
    if photometric.startswith("YBR_FULL"):
        arr = _ybr_to_rgb(arr)
    return arr[..., :3]


def fit(arr: Array, box: tuple[int, int] | None) -> Array:
    """Scale down (area average, then nearest) to fit `box` (width, height); never up."""
    if box is None:
        return arr
    height, width = arr.shape[:2]
    scale = min(box[0] / width, box[1] / height, 1.0)
    if scale >= 1.0:
        return arr
    factor = int(1 / scale)
    if factor > 1:
        h, w = height // factor * factor, width // factor * factor
        trimmed = arr[:h, :w].astype(np.float64)
        shape = (h // factor, factor, w // factor, factor) + arr.shape[2:]
        arr = trimmed.reshape(shape).mean(axis=(1, 3)).round().astype(np.uint8)
        height, width = arr.shape[:2]
    target_w, target_h = max(1, round(width * scale * factor)), max(1, round(height * scale * factor))
    if (target_h, target_w) != (height, width):
        rows = np.minimum((np.arange(target_h) * height / target_h).astype(int), height - 1)
        cols = np.minimum((np.arange(target_w) * width / target_w).astype(int), width - 1)
        arr = arr[rows][:, cols]
    return np.ascontiguousarray(arr)


def encode(arr: Array, media_type: str, quality: int = 90) -> bytes:
    if media_type == PNG:
        return bytes(imagecodecs.png_encode(arr))
    return bytes(imagecodecs.jpeg8_encode(arr, level=quality))


def choose_media_type(accept: str | None, requested: str | None = None) -> str:
    """image/jpeg (the default) or image/png, from the Accept header or an explicit request."""
    if requested:
        if requested not in MEDIA_TYPES:
            raise InvalidInput(f"rendered images are {' or '.join(MEDIA_TYPES)}, not {requested}")
        return requested
    for entry in parse_accept(accept):
        if entry.media_type in MEDIA_TYPES:
            return entry.media_type
        if entry.media_type in ("*/*", "image/*"):
            return JPEG
    raise Unsupported(f"rendered images are {' or '.join(MEDIA_TYPES)}")


def render(pixels: Array, attrs: dict[str, Any], photometric: str, media_type: str, *,
           request_window: tuple[float, float, str] | None = None, viewport: tuple[int, int] | None = None,
           quality: int = 90) -> bytes:
    return encode(fit(to_8bit(pixels, attrs, photometric, request_window), viewport), media_type, quality)
