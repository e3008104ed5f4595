"""Image headers are read before decoding: a small file declaring gigapixels is refused, not allocated."""

import struct

import cv2
import numpy as np
import pytest

from onnxcam.errors import OnnxcamError
from onnxcam.image import MAX_PIXELS, read_rgb
from onnxcam.imageheader import declared_size


def encoded(ext: str, w: int = 37, h: int = 23) -> bytes:
    rgb = np.random.default_rng(0).integers(0, 255, (h, w, 3), np.uint8)
    ok, buf = cv2.imencode(ext, rgb)
    assert ok
    return buf.tobytes()


def inflate(ext: str, data: bytes) -> bytes:
    """The same file with a header that declares 60000 × 60000 pixels."""
    b = bytearray(data)
    if ext == ".png":
        b[16:24] = struct.pack(">II", 60000, 60000)
    elif ext == ".bmp":
        b[18:26] = struct.pack("<ii", 60000, 60000)
    elif ext == ".jpg":
        i = next(i for i in range(2, len(b)) if b[i] == 0xFF and b[i + 1] in (0xC0, 0xC1, 0xC2))
        b[i + 5 : i + 9] = struct.pack(">HH", 60000, 60000)
    return bytes(b)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp"])
def test_declared_size_is_the_encoded_size(ext):
    assert declared_size(encoded(ext)) == (37, 23)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp"])
def test_a_header_declaring_gigapixels_is_refused_before_decoding(tmp_path, ext):
    path = tmp_path / f"bomb{ext}"
    path.write_bytes(inflate(ext, encoded(ext)))
    assert 60000 * 60000 > MAX_PIXELS
    with pytest.raises(OnnxcamError, match="declares 60000x60000 pixels"):
        read_rgb(path)


def test_truncated_and_unknown_headers_give_no_size():
    assert declared_size(encoded(".png")[:20]) is None and declared_size(b"\xff\xd8\xff") is None
    assert declared_size(b"not an image at all") is None
