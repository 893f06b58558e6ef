"""Inline image bytes checked from their headers: format and pixel count, nothing decoded.

JPEG and PNG, nearly every row of the public sets, are read here in a few microseconds (SOI, segments, a frame
header, then the scan header for JPEG; the signature and a CRC-checked IHDR for PNG); Pillow's parser, about
100 µs an image, takes the other formats. Both refuse what Pillow's `Image.open` refuses for these formats;
truncated pixel data is found only by decoding (--verify-images).
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # what training opens; EPS, PSD and the like are refused
_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "TIFF": "tif"}
_HOSTILE = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)
# Start-of-frame markers (baseline, progressive, lossless...): C0-CF but DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
Fault = tuple[str, str]  # (reason, message)


def _jpeg_size(data: memoryview) -> tuple[int, int] | None:
    """(width, height) when the markers up to the scan header are whole and a frame header came first."""
    position, end, size = 2, len(data), None
    while position + 4 <= end:
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            position += 2
            continue
        length = data[position + 2] << 8 | data[position + 3]
        if length < 2 or position + 2 + length > end:
            return None
        if marker in _SOF:
            if length < 8 or data[position + 9] not in (1, 3, 4):  # components: grey, YCbCr/RGB, CMYK
                return None
            height, width = struct.unpack_from(">HH", data, position + 5)
            size = (width, height) if width and height else None
        elif marker == 0xDA:  # start of scan: the header is whole
            return size
        position += 2 + length
    return None


def _png_size(data: memoryview) -> tuple[int, int] | None:
    if len(data) < 33 or data[12:16] != b"IHDR" or struct.unpack_from(">I", data, 8)[0] != 13:
        return None
    if zlib.crc32(data[12:29]) != struct.unpack_from(">I", data, 29)[0]:
        return None
    width, height = struct.unpack_from(">II", data, 16)
    return (width, height) if width and height else None


def _pillow(data: memoryview, max_pixels: int, decode: bool) -> tuple[str | None, Fault | None]:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                width, height = image.size
                if width * height > max_pixels:
                    return None, _too_large(width, height, max_pixels)
                if decode:
                    image.load()
                form = image.format
    except Image.DecompressionBombError as error:  # Pillow refuses over twice its limit, before our comparison
        return None, ("image_too_large", f"{error} (the limit here is {max_pixels:,} pixels, --max-pixels)")
    except UnidentifiedImageError:
        return None, ("image_undecodable", f"{len(data):,} bytes that are not a {', '.join(FORMATS)} image")
    except _HOSTILE as error:
        message = str(error) or type(error).__name__
        return None, ("image_truncated" if "truncated" in message.lower() else "image_undecodable", message)
    return _EXTENSIONS.get(form, form.lower()), None


def _too_large(width: int, height: int, max_pixels: int) -> Fault:
    return "image_too_large", f"{width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,}"


def sniff(data: bytes | memoryview, max_pixels: int, decode: bool = False) -> tuple[str | None, Fault | None]:
    """(file extension, None) for an image within the pixel limit, else (None, (reason, message)).

    `decode` decodes the image fully (Pillow), which also finds truncated pixel data.
    """
    view = memoryview(data)
    if view.format != "B":  # pyarrow's buffers are signed chars
        view = view.cast("B")
    if not decode:
        if view[:3] == b"\xff\xd8\xff":
            size, extension, what = _jpeg_size(view), "jpg", "JPEG"
        elif view[:8] == _PNG_SIGNATURE:
            size, extension, what = _png_size(view), "png", "PNG"
        else:
            return _pillow(view, max_pixels, decode)
        if size is None:
            return None, ("image_undecodable", f"a {what} of {len(view):,} bytes whose header is broken or cut short")
        if size[0] * size[1] > max_pixels:
            return None, _too_large(*size, max_pixels)
        return extension, None
    return _pillow(view, max_pixels, decode)
