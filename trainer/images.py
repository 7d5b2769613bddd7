"""Images in any of the forms the trainer meets them, as PIL RGB images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from biovita.errors import ConfigError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


def to_pil(image) -> Image.Image:
    """A PIL RGB image from a PIL image, a path, encoded bytes or a uint8 ``[H, W, 3]`` array."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, Path, bytes)):
        with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as img:
            return img.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ConfigError(
            f"an image array must be uint8 [H, W, 3], got {array.dtype} {array.shape}",
            hint="pass RGB uint8 images or image file paths",
        )
    return Image.fromarray(array, "RGB")
