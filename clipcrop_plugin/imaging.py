"""Image intake: open a photo with Pillow, make it upright, small enough to score, and RGB.

(Interface fixed by the foundation; ``load_image`` is implemented below.)
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from .results import PhotoInfo


@dataclass
class LoadedImage:
    """An upright RGB working copy of a photo plus what intake learned about the file.

    ``image`` may be smaller than the photo (JPEG draft decoding, downscaling): boxes are always
    expressed in full-resolution upright pixels (``info.width`` x ``info.height``), and
    ``scale`` converts them to ``image`` pixels.
    """

    image: Image.Image
    info: PhotoInfo

    @property
    def scale(self) -> float:
        """``image`` pixels per full-resolution upright pixel (<= 1)."""
        return self.image.width / self.info.width
