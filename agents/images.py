"""The one loader every image passes through before it reaches a MedGemma processor or a prompt.

Sources are files, raw bytes, PIL images, or LangChain image content blocks. The format is taken
from the content (DICOM's ``DICM`` magic at offset 128, otherwise whatever Pillow identifies),
never from a file extension. Every result is an 8-bit RGB :class:`PIL.Image.Image`:

- DICOM: modality LUT / rescale, then the file's VOI LUT or window (a min/max stretch when it has
  none), MONOCHROME1 inverted, palette and YBR colour turned into RGB, one frame of a multi-frame
  object. Only the tags in :data:`SAFE_DICOM_TAGS` are kept; patient fields never leave here.
- Everything else: decoded in full by Pillow (so a truncated file fails here, not later), EXIF
  orientation applied, transparency composited onto white, 16-bit/float greyscale stretched.

The pixel count is checked against ``max_pixels`` from the header, before any pixels are decoded.
Every failure raises :class:`medgraph.errors.ImageLoadError` naming the source, the reason and
the fix.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit
from urllib.request import url2pathname

import numpy as np
import pydicom
from PIL import Image, ImageOps, UnidentifiedImageError
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, apply_windowing
from pydicom.pixels import pixel_array as dicom_pixel_array

from medgraph.errors import ImageLoadError, ImageTooLargeError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SAFE_DICOM_TAGS",
    "LoadedImage",
    "image_to_data_url",
    "is_image_block",
    "load_image",
    "load_image_block",
]

DEFAULT_MAX_PIXELS: int = 50_000_000
"""Largest width x height accepted by default (decompression-bomb guard); see ``max_pixels``."""

SAFE_DICOM_TAGS = ("Modality", "BodyPartExamined", "ViewPosition")
"""The only DICOM attributes that may reach a prompt or a log: none of them identifies a person."""

_METADATA_KEYS = {
    "Modality": "modality",
    "BodyPartExamined": "body_part",
    "ViewPosition": "view_position",
}

# Code String (CS) values: upper-case letters, digits, space and underscore, at most 16 characters.
# Anything else in these tags is malformed, and is dropped rather than passed on to a prompt.
_CODE_STRING = re.compile(r"[A-Z0-9_ ]{1,16}")

_DICOM_MAGIC_OFFSET = 128
_DICOM_MAGIC = b"DICM"
_DICOM_MEDIA_TYPE = "application/dicom"
# A PIL image handed in directly has no encoded source bytes.
_IN_MEMORY_MEDIA_TYPE = "image/x-pil-image"

# Formats Pillow may open. An allow-list keeps out plugins that shell out (EPS runs Ghostscript)
# or that only serve exotic formats with little-tested parsers.
# JPEG's opener also returns MPO (multi-picture) files.
_PILLOW_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "JPEG2000")
_PILLOW_FORMAT_NAMES = "PNG, JPEG, GIF, BMP, TIFF, WebP, PPM, JPEG 2000"

_PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

# Attributes that decide how stored values become grey levels; enhanced multi-frame objects may
# move them into functional groups (shared, or per frame).
_GREY_LEVEL_KEYWORDS = (
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "ModalityLUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "VOILUTSequence",
    "PresentationLUTShape",
)
_FUNCTIONAL_GROUP_MACROS = ("PixelValueTransformationSequence", "FrameVOILUTSequence")

_MODALITY_NOUNS = {
    "CR": "radiograph",
    "DX": "radiograph",
    "RG": "radiograph",
    "IO": "intraoral radiograph",
    "PX": "panoramic radiograph",
    "MG": "mammogram",
    "CT": "scan",
    "MR": "scan",
    "PT": "scan",
    "NM": "scan",
    "US": "ultrasound",
    "XA": "angiogram",
    "RF": "fluoroscopy image",
    "SM": "slide image",
    "OP": "fundus photograph",
    "XC": "photograph",
    "ES": "endoscopy image",
}

_REMOTE_URL_MESSAGE = (
    "remote image URLs are not fetched; download the file and pass its path or base64"
)


@dataclass(frozen=True)
class LoadedImage:
    """An image decoded to RGB, with a display name, a content hash and non-identifying metadata.

    ``metadata`` holds only the :data:`SAFE_DICOM_TAGS` a DICOM file carries, under the keys
    ``modality``, ``body_part`` and ``view_position``; it is empty for other formats.
    """

    image: Image.Image
    name: str
    sha256: str
    media_type: str
    metadata: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One line such as ``"CR chest radiograph (PA)"`` from the metadata, or ``""``."""
        modality = self.metadata.get("modality", "")
        body_part = self.metadata.get("body_part", "")
        view = self.metadata.get("view_position", "")
        if not (modality or body_part or view):
            return ""
        words = [modality] if modality else []
        if body_part:
            words.append(body_part.lower().replace("_", " "))
        words.append(_MODALITY_NOUNS.get(modality, "image"))
        text = " ".join(words)
        return f"{text} ({view})" if view else text


def load_image(
    source: str | os.PathLike[str] | bytes | Image.Image,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    frame: int = 0,
    name: str | None = None,
) -> LoadedImage:
    """Decode a file path, raw bytes or a PIL image into an RGB :class:`LoadedImage`.

    ``frame`` picks one frame of a multi-frame source (DICOM, GIF, TIFF); ``name`` overrides the
    display name (default: the file name, or ``image-<sha8>`` for bytes). Raises
    :class:`ImageLoadError` for a missing, empty, unreadable, truncated or oversized image.
    """
    if max_pixels < 1:
        raise ImageLoadError(f"max_pixels must be a positive pixel count, got {max_pixels}")
    if frame < 0:
        raise ImageLoadError(f"frame must be 0 or more (0 is the first frame), got {frame}")
    if isinstance(source, Image.Image):
        return _load_pil_image(source, max_pixels=max_pixels, frame=frame, name=name)
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        label = f"image bytes ({len(data)} bytes)"
        return _load_bytes(data, label=label, name=name, max_pixels=max_pixels, frame=frame)
    if isinstance(source, str | os.PathLike):
        path = Path(os.fspath(source)).expanduser()
        data = _read_file(path)
        return _load_bytes(
            data, label=str(path), name=name or path.name, max_pixels=max_pixels, frame=frame
        )
    raise ImageLoadError(
        f"cannot load an image from a {type(source).__name__}; pass a file path, bytes, "
        "a PIL image, or use load_image_block for a message content block"
    )


def is_image_block(block: Mapping[str, Any]) -> bool:
    """Whether a message content block is an image block (``type`` ``"image"``/``"image_url"``).

    A block that passes may still be refused by :func:`load_image_block`, e.g. a remote URL.
    """
    return isinstance(block, Mapping) and block.get("type") in ("image", "image_url")


def load_image_block(
    block: Mapping[str, Any], *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> LoadedImage:
    """Decode a LangChain / OpenAI image content block into a :class:`LoadedImage`.

    Accepted: ``{"type": "image", "base64": ..., "mime_type": ...}``, ``{"type": "image",
    "url": "data:..." | "file:///..."}``, ``{"type": "image", "path": ...}``, the legacy
    ``{"type": "image", "source_type": "base64", "data": ...}`` and OpenAI's ``{"type":
    "image_url", "image_url": {"url": ...} | "..."}``. Remote http(s) URLs are refused.
    """
    if not is_image_block(block):
        kind = block.get("type") if isinstance(block, Mapping) else type(block).__name__
        raise ImageLoadError(
            f"content block of type {kind!r} is not an image block; "
            "expected type 'image' or 'image_url'"
        )
    if block["type"] == "image_url":
        ref = block.get("image_url")
        url = ref.get("url") if isinstance(ref, Mapping) else ref
        if not isinstance(url, str) or not url:
            raise ImageLoadError(
                "image_url block has no URL; expected {'type': 'image_url', "
                "'image_url': {'url': 'data:image/png;base64,...'}}"
            )
        return _load_url(url, max_pixels=max_pixels)
    if block.get("base64") is not None:
        data = _decode_base64(block["base64"], label="image block 'base64'")
        return _load_bytes(
            data, label="image block 'base64'", name=None, max_pixels=max_pixels, frame=0
        )
    if block.get("source_type") == "base64" or block.get("data") is not None:
        data = _decode_base64(block.get("data"), label="image block 'data'")
        return _load_bytes(
            data, label="image block 'data'", name=None, max_pixels=max_pixels, frame=0
        )
    if block.get("path") is not None:
        path = block["path"]
        if not isinstance(path, str | os.PathLike):
            raise ImageLoadError(f"image block 'path' must be a string, got {type(path).__name__}")
        return load_image(path, max_pixels=max_pixels)
    url = block.get("url")
    if isinstance(url, str) and url:
        return _load_url(url, max_pixels=max_pixels)
    if block.get("file_id") is not None or block.get("source_type") == "id":
        raise ImageLoadError(
            "image block refers to a provider's file store (file_id), which medgraph cannot "
            "read; pass the image as base64 or as a local path"
        )
    raise ImageLoadError(
        f"image block has none of 'base64', 'data', 'path' or 'url' (keys: {sorted(block)}); "
        "pass the image as base64 or as a local path"
    )


def image_to_data_url(image: LoadedImage, fmt: str = "PNG") -> str:
    """Encode a loaded image as a ``data:`` URL, for ``image_url`` parts of OpenAI-style APIs.

    ``fmt`` is ``"PNG"`` (lossless, default), ``"JPEG"`` or ``"WEBP"``.
    """
    encoders = {"PNG": "image/png", "JPEG": "image/jpeg", "JPG": "image/jpeg", "WEBP": "image/webp"}
    fmt_upper = fmt.upper()
    if fmt_upper not in encoders:
        raise ValueError(f"unsupported data URL format {fmt!r}; use 'PNG', 'JPEG' or 'WEBP'")
    pil_format = "JPEG" if fmt_upper == "JPG" else fmt_upper
    buffer = io.BytesIO()
    options: dict[str, Any] = {"quality": 95} if pil_format in ("JPEG", "WEBP") else {}
    image.image.save(buffer, format=pil_format, **options)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:{encoders[fmt_upper]};base64,{encoded}"


# --- sources -------------------------------------------------------------------------------


def _read_file(path: Path) -> bytes:
    if not path.exists():
        raise ImageLoadError(f"{path}: image file not found; check the path")
    if path.is_dir():
        raise ImageLoadError(f"{path}: is a directory, not an image file; pass the file itself")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageLoadError(
            f"{path}: cannot read image file ({exc.strerror or _reason(exc)}); "
            "check its permissions"
        ) from exc
    if not data:
        raise ImageLoadError(f"{path}: image file is empty (0 bytes); re-export or re-copy it")
    return data


def _load_url(url: str, *, max_pixels: int) -> LoadedImage:
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "data":
        header, comma, payload = url[5:].partition(",")
        if not comma:
            raise ImageLoadError(
                "data URL image has no ',' before its payload; expected "
                "'data:image/png;base64,<base64 data>'"
            )
        if header.lower().endswith(";base64"):
            data = _decode_base64(payload, label="data URL image")
        else:
            data = unquote_to_bytes(payload)
        return _load_bytes(data, label="data URL image", name=None, max_pixels=max_pixels, frame=0)
    if scheme == "file":
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ImageLoadError(
                f"file URL {url!r} names host {parts.netloc!r}; only local files can be read: "
                "use file:///absolute/path"
            )
        return load_image(url2pathname(parts.path), max_pixels=max_pixels)
    if scheme in ("http", "https"):
        parts = urlsplit(url)
        # Query strings of signed URLs carry credentials: keep them out of the message.
        shown = f"{parts.scheme}://{parts.netloc}{parts.path}"[:120]
        raise ImageLoadError(f"{shown}: {_REMOTE_URL_MESSAGE}")
    raise ImageLoadError(
        f"image URL {url[:60]!r} is neither a data: nor a file: URL; pass base64, a data URL, "
        "or the local file as {'type': 'image', 'path': ...}"
    )


def _decode_base64(payload: object, *, label: str) -> bytes:
    if isinstance(payload, bytes | bytearray):
        text = bytes(payload).decode("ascii", errors="replace")
    elif isinstance(payload, str):
        text = payload
    else:
        raise ImageLoadError(
            f"{label}: expected a base64 string, got {type(payload).__name__}; "
            "encode the image file's bytes with base64"
        )
    compact = "".join(text.split())
    if not compact:
        raise ImageLoadError(f"{label}: base64 payload is empty; encode the image file's bytes")
    altchars = b"-_" if ("-" in compact or "_" in compact) else None
    padded = compact + "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(padded, altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageLoadError(
            f"{label}: invalid base64 ({_reason(exc)}); "
            "encode the image file's bytes with standard base64"
        ) from exc


def _reason(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line (decoder messages span lines and can run long)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _default_name(sha256: str) -> str:
    return f"image-{sha256[:8]}"


def _load_pil_image(
    source: Image.Image, *, max_pixels: int, frame: int, name: str | None
) -> LoadedImage:
    label = f"PIL image ({source.mode}, {source.width}x{source.height})"
    _check_pixel_count(source.width, source.height, max_pixels=max_pixels, label=label)
    frame_count = int(getattr(source, "n_frames", 1))
    if frame >= frame_count:
        raise _frame_out_of_range(label, frame, frame_count)
    try:
        if frame_count > 1:
            # Seek to the wanted frame and back again: the caller's image keeps its position.
            position = source.tell()
            source.seek(frame)
            picked = source.copy()
            source.seek(position)
        else:
            source.load()
            picked = source
        rgb = _pil_to_rgb(picked)
    except Exception as exc:
        raise ImageLoadError(
            f"{label}: cannot decode the image ({_reason(exc)}); re-open it from its file"
        ) from exc
    # Hash the decoded pixels with their layout: an in-memory image has no source bytes.
    digest = hashlib.sha256(f"{rgb.mode}:{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    sha256 = digest.hexdigest()
    fmt = getattr(source, "format", None)
    media_type = f"image/{fmt.lower()}" if isinstance(fmt, str) and fmt else _IN_MEMORY_MEDIA_TYPE
    return LoadedImage(
        image=rgb, name=name or _default_name(sha256), sha256=sha256, media_type=media_type
    )


def _load_bytes(
    data: bytes, *, label: str, name: str | None, max_pixels: int, frame: int
) -> LoadedImage:
    if not data:
        raise ImageLoadError(f"{label}: image data is empty (0 bytes); pass the image file's bytes")
    sha256 = hashlib.sha256(data).hexdigest()
    if data[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == _DICOM_MAGIC:
        rgb, metadata, dataset = _decode_dicom(
            data, label=label, max_pixels=max_pixels, frame=frame
        )
        display_name = name or _default_name(sha256)
        if _mentions_patient(display_name, dataset):
            display_name = _default_name(sha256)
        return LoadedImage(
            image=rgb,
            name=display_name,
            sha256=sha256,
            media_type=_DICOM_MEDIA_TYPE,
            metadata=metadata,
        )
    rgb, media_type = _decode_with_pillow(data, label=label, max_pixels=max_pixels, frame=frame)
    return LoadedImage(
        image=rgb, name=name or _default_name(sha256), sha256=sha256, media_type=media_type
    )


def _too_large_to_decode(
    label: str, error: Image.DecompressionBombError, max_pixels: int
) -> ImageTooLargeError:
    """Pillow's own bomb guard fired (before ours could read the size); its message has it."""
    stated = re.search(r"\((\d+) pixels\)", str(error))
    return ImageTooLargeError(
        f"{label}: image is too large to decode safely ({_reason(error)}); downscale it",
        pixels=int(stated.group(1)) if stated else None,
        max_pixels=max_pixels,
    )


def _check_pixel_count(width: int, height: int, *, max_pixels: int, label: str) -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{label}: image is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (decompression-bomb guard); downscale it, or raise max_pixels if "
            "the file is trusted",
            pixels=width * height,
            max_pixels=max_pixels,
        )


def _frame_out_of_range(label: str, frame: int, frame_count: int) -> ImageLoadError:
    return ImageLoadError(
        f"{label}: frame {frame} requested but the image has {frame_count} frame(s); "
        f"pick a frame from 0 to {frame_count - 1}"
    )


# --- Pillow formats ------------------------------------------------------------------------


def _decode_with_pillow(
    data: bytes, *, label: str, max_pixels: int, frame: int
) -> tuple[Image.Image, str]:
    try:
        opened = Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS)
    except Image.DecompressionBombError as exc:
        raise _too_large_to_decode(label, exc, max_pixels) from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(
            f"{label}: not a recognised image (supported: {_PILLOW_FORMAT_NAMES} or DICOM); "
            "check that the file is an image and not, e.g., text or a PDF (a DICOM file needs "
            "its 128-byte preamble and 'DICM' marker)"
        ) from exc
    except Exception as exc:
        # Pillow's header parsers raise many exception types on malformed input
        # (SyntaxError, struct.error, ValueError, ...); all mean the same to the caller.
        raise ImageLoadError(
            f"{label}: image header is corrupt ({_reason(exc)}); re-export or re-download the file"
        ) from exc
    with opened:
        _check_pixel_count(opened.width, opened.height, max_pixels=max_pixels, label=label)
        fmt = opened.format or "unknown"
        media_type = opened.get_format_mimetype() or f"image/{fmt.lower()}"
        frame_count = int(getattr(opened, "n_frames", 1))
        if frame >= frame_count:
            raise _frame_out_of_range(label, frame, frame_count)
        try:
            if frame:
                opened.seek(frame)
            # Decode every pixel now: a truncated or corrupt file must fail here, not later.
            opened.load()
            rgb = _pil_to_rgb(ImageOps.exif_transpose(opened) or opened)
        except Image.DecompressionBombError as exc:
            raise _too_large_to_decode(label, exc, max_pixels) from exc
        except Exception as exc:
            raise ImageLoadError(
                f"{label}: {fmt} image data is truncated or corrupt ({_reason(exc)}); "
                "re-export or re-download the file"
            ) from exc
    return rgb, media_type


def _pil_to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        grey = _stretch_to_uint8(np.asarray(image, dtype=np.float64))
        return Image.fromarray(grey).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Figures often draw dark strokes on a transparent background: put them on white.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map the finite range of ``values`` linearly onto 0..255 (a constant image becomes 0)."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, dtype=np.uint8)
    low = float(values[finite].min())
    high = float(values[finite].max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return _unit_to_uint8((np.where(finite, values, low) - low) / (high - low))


def _unit_to_uint8(unit: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)


# --- DICOM ---------------------------------------------------------------------------------


def _decode_dicom(
    data: bytes, *, label: str, max_pixels: int, frame: int
) -> tuple[Image.Image, dict[str, str], Dataset]:
    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:
        # pydicom raises a wide range of exception types on malformed files.
        raise ImageLoadError(
            f"{label}: DICOM file cannot be parsed ({_reason(exc)}); "
            "check that the file is complete"
        ) from exc
    try:
        return _render_dicom(dataset, label=label, max_pixels=max_pixels, frame=frame)
    except ImageLoadError:
        raise
    except Exception as exc:
        # pydicom converts elements lazily, so malformed values surface here, as any type.
        raise ImageLoadError(
            f"{label}: DICOM file is malformed ({_reason(exc)}); check that it was exported "
            "and copied intact"
        ) from exc


def _render_dicom(
    dataset: Dataset, *, label: str, max_pixels: int, frame: int
) -> tuple[Image.Image, dict[str, str], Dataset]:
    metadata = _safe_metadata(dataset)
    if not any(keyword in dataset for keyword in _PIXEL_DATA_KEYWORDS):
        raise ImageLoadError(
            f"{label}: DICOM file has no pixel data{_dicom_kind(dataset)}, so it is not an "
            "image; pass a DICOM image (an object with Pixel Data), e.g. the series exported "
            "from PACS"
        )
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        frame_count = int(dataset.get("NumberOfFrames") or 1)
    except Exception as exc:
        raise ImageLoadError(
            f"{label}: DICOM image has missing or malformed Rows/Columns/NumberOfFrames "
            f"({_reason(exc)}); the file is damaged"
        ) from exc
    _check_pixel_count(columns, rows, max_pixels=max_pixels, label=label)
    if frame >= frame_count:
        raise _frame_out_of_range(label, frame, frame_count)
    syntax = dataset.file_meta.get("TransferSyntaxUID")
    syntax_name = getattr(syntax, "name", str(syntax))
    try:
        pixels = dicom_pixel_array(dataset, index=frame)
        rgb_array = _dicom_pixels_to_rgb(pixels, dataset, frame)
    except ImageLoadError:
        raise
    except Exception as exc:
        raise ImageLoadError(
            f"{label}: cannot decode DICOM pixel data (transfer syntax {syntax_name!r}): "
            f"{_reason(exc)}. If the file is intact, install a decoder for this "
            "compression (e.g. pylibjpeg with pylibjpeg-libjpeg / pyjpegls) or convert it to "
            "an uncompressed transfer syntax"
        ) from exc
    return Image.fromarray(np.ascontiguousarray(rgb_array, dtype=np.uint8)), metadata, dataset


def _dicom_kind(dataset: Dataset) -> str:
    """A non-identifying description such as `` (modality SR, Comprehensive SR Storage)``."""
    parts = []
    try:
        modality = _code_string(dataset.get("Modality"))
        if modality:
            parts.append(f"modality {modality}")
        sop_class = dataset.get("SOPClassUID")
        sop_name = getattr(sop_class, "name", "")
        if sop_name and sop_name != str(sop_class):
            parts.append(sop_name)
    except Exception:
        pass  # only decorates an error message; a malformed tag must not replace it
    return f" ({', '.join(parts)})" if parts else ""


def _dicom_pixels_to_rgb(pixels: np.ndarray, dataset: Dataset, frame: int) -> np.ndarray:
    samples = int(dataset.get("SamplesPerPixel") or 1)
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if samples == 3 and pixels.ndim == 3:
        # pydicom has already turned YBR_FULL / YBR_FULL_422 into RGB (raw=False).
        bits = int(dataset.get("BitsStored") or pixels.dtype.itemsize * 8)
        return _scale_unsigned(pixels, bits)
    if samples != 1 or pixels.ndim != 2:
        raise ImageLoadError(
            f"DICOM image with {samples} samples per pixel and photometric interpretation "
            f"{photometric!r} is not supported; convert it to MONOCHROME2 or RGB"
        )
    if photometric == "PALETTE COLOR":
        coloured = apply_color_lut(pixels, dataset)
        return _scale_unsigned(coloured, coloured.dtype.itemsize * 8)
    attributes = _grey_level_attributes(dataset, frame)
    grey = _window_to_uint8(pixels, attributes)
    photometric = str(attributes.get("PhotometricInterpretation", photometric)).strip().upper()
    shape = str(attributes.get("PresentationLUTShape", "")).strip().upper()
    # For MONOCHROME1 an INVERSE presentation shape describes that same inversion, not a second.
    if photometric == "MONOCHROME1" or (photometric == "MONOCHROME2" and shape == "INVERSE"):
        grey = 255 - grey
    return np.repeat(grey[:, :, np.newaxis], 3, axis=2)


def _scale_unsigned(pixels: np.ndarray, bits: int) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return np.ascontiguousarray(pixels[..., :3])
    top = float(2 ** max(1, min(bits, 32)) - 1)
    return _unit_to_uint8(pixels[..., :3].astype(np.float64) / top)


def _grey_level_attributes(dataset: Dataset, frame: int) -> Dataset:
    """The attributes that map frame ``frame`` to grey levels, functional groups included."""
    groups: list[Dataset] = []
    for sequence_keyword, index in (
        ("SharedFunctionalGroupsSequence", 0),
        ("PerFrameFunctionalGroupsSequence", frame),
    ):
        sequence = dataset.get(sequence_keyword)
        if sequence and index < len(sequence):
            groups.append(sequence[index])
    if not groups:
        return dataset
    attributes = Dataset()
    attributes.file_meta = dataset.file_meta
    for keyword in _GREY_LEVEL_KEYWORDS:
        if keyword in dataset:
            attributes[keyword] = dataset[keyword]
    for group in groups:  # shared first, so per-frame values win
        for macro in _FUNCTIONAL_GROUP_MACROS:
            items = group.get(macro)
            if not items:
                continue
            for element in items[0]:
                if element.keyword in _GREY_LEVEL_KEYWORDS:
                    attributes[element.keyword] = element
    return attributes


def _window_to_uint8(pixels: np.ndarray, attributes: Dataset) -> np.ndarray:
    """Modality LUT, then the VOI LUT or window, scaled to 0..255; min/max when there is none."""
    values: np.ndarray = pixels
    if np.issubdtype(pixels.dtype, np.integer):
        try:
            values = apply_modality_lut(pixels, attributes)
        except Exception:
            values = pixels  # a malformed modality LUT: use the stored values as they are
    try:
        windowed = _apply_voi(values, attributes)
    except Exception:
        windowed = None  # a malformed window or VOI LUT: fall back to a min/max stretch
    if windowed is not None and windowed[1] != windowed[2]:
        output, low, high = windowed
        return _unit_to_uint8((output.astype(np.float64) - low) / (high - low))
    bits = int(attributes.get("BitsStored") or 0)
    unchanged = values is pixels or np.array_equal(values, pixels)
    if unchanged and pixels.dtype.kind == "u" and 0 < bits <= 8:
        # 8-bit data with no window is meant to be shown as stored (e.g. a JPEG in DICOM).
        return _unit_to_uint8(pixels.astype(np.float64) / (2**bits - 1))
    return _stretch_to_uint8(values.astype(np.float64))


def _apply_voi(values: np.ndarray, attributes: Dataset) -> tuple[np.ndarray, float, float] | None:
    """Apply the VOI LUT (preferred) or the window; return the output and its full range."""
    voi_items = attributes.get("VOILUTSequence")
    if voi_items and "LUTDescriptor" in voi_items[0] and "LUTData" in voi_items[0]:
        entries, first_mapped, _ = (int(v) for v in voi_items[0].LUTDescriptor)
        entries = entries or 2**16
        output = apply_voi(np.rint(values).astype(np.int64), attributes, 0)
        # The LUT's own extremes, not the descriptor's nominal depth: many files declare 16
        # bits and fill 12.
        table = apply_voi(np.arange(first_mapped, first_mapped + entries), attributes, 0)
        return output, float(table.min()), float(table.max())
    if "WindowCenter" in attributes and "WindowWidth" in attributes:
        output = apply_windowing(values, attributes, 0)
        # Windowing clips to an output range that depends on BitsStored, signedness and the
        # rescale; probing with extreme inputs reads it from pydicom rather than re-deriving it.
        with np.errstate(over="ignore"):
            probe = apply_windowing(np.array([-1e300, 1e300]), attributes, 0)
        return output, float(probe[0]), float(probe[1])
    return None


def _code_string(value: object) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = value[0] if len(value) else ""
    if value is None:
        return ""
    text = str(value).strip().upper()
    return text if _CODE_STRING.fullmatch(text) else ""


def _safe_metadata(dataset: Dataset) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for keyword in SAFE_DICOM_TAGS:
        try:
            value = _code_string(dataset.get(keyword))
        except Exception:
            value = ""  # a malformed element: leave it out rather than fail the whole image
        if value:
            metadata[_METADATA_KEYS[keyword]] = value
    return metadata


def _mentions_patient(display_name: str, dataset: Dataset) -> bool:
    """Whether a display name contains a patient identifier of the DICOM file.

    File names such as ``DOE_JOHN_1234.dcm`` are common in exports; when in doubt (the patient
    fields cannot be read) the answer is yes, so the caller falls back to a hash name.
    """
    try:
        identifiers: list[str] = []
        patient_name = dataset.get("PatientName")
        if patient_name:
            identifiers += re.split(r"[\^=\s,]+", str(patient_name))
        for keyword in ("PatientID", "PatientBirthDate", "OtherPatientIDs"):
            value = dataset.get(keyword)
            if isinstance(value, Sequence) and not isinstance(value, str):
                identifiers += [str(item) for item in value]
            elif value:
                identifiers.append(str(value))
    except Exception:
        return True
    lowered = display_name.lower()
    return any(len(token) >= 3 and token.lower() in lowered for token in identifiers)
