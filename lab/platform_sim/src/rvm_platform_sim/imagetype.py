"""Image type by content (magic bytes), never by file name or the client's Content-Type.

Laravel's ``mimes``/``image`` rules guess the type from the bytes (PHP's finfo), so a PNG named
``x.jpg`` is a PNG and a text file named ``x.jpg`` is rejected. Pure: bytes in, a name out.
"""

from __future__ import annotations

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)

EXTENSIONS = {"jpeg": "jpg", "png": "png", "gif": "gif", "bmp": "bmp", "webp": "webp"}


def sniff_image_type(data: bytes) -> str | None:
    """Return ``jpeg``, ``png``, ``gif``, ``bmp`` or ``webp`` when the bytes start like one, else None."""
    for magic, kind in _SIGNATURES:
        if data.startswith(magic):
            return kind
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None
