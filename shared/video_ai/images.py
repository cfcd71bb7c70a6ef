"""Safe decoding of query images (PNG/JPEG, base64) for search by image."""

from __future__ import annotations

import base64
import binascii
import io
import logging
import warnings

import numpy as np

from video_ai.domain.errors import InvalidRequest

MAX_IMAGE_BYTES = 5 * 1024 * 1024
# Guards against decompression bombs: a tiny PNG that claims gigapixels.
MAX_IMAGE_PIXELS = 40_000_000

logger = logging.getLogger(__name__)


def decode_image(data_b64: str, *, field: str = "image_base64") -> np.ndarray:
    """Base64 PNG/JPEG -> H x W x 3 uint8 RGB; InvalidRequest naming `field` for anything else."""
    if len(data_b64) > (MAX_IMAGE_BYTES * 4) // 3 + 4:
        raise InvalidRequest("image is larger than 5 MB", field=field)
    try:
        raw = base64.b64decode(data_b64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("image is not valid base64", field=field) from None
    if len(raw) > MAX_IMAGE_BYTES:
        raise InvalidRequest("image is larger than 5 MB", field=field)
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as img:
                if img.format not in ("PNG", "JPEG"):
                    raise InvalidRequest(f"image must be PNG or JPEG, not {img.format}", field=field)
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise InvalidRequest(f"image is too large ({img.width}x{img.height})", field=field)
                rgb = img.convert("RGB")
                rgb.load()
    except InvalidRequest:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InvalidRequest("image dimensions are too large", field=field) from None
    except (OSError, ValueError, SyntaxError) as err:
        # Pillow's own text names a BytesIO address; the class alone says nothing to the client.
        logger.info("image could not be decoded: %s: %s", type(err).__name__, err)
        raise InvalidRequest("image could not be decoded: the bytes are not a readable PNG or JPEG",
                             field=field) from None
    return np.asarray(rgb, dtype=np.uint8)
