"""Image input/output: robust reading (clear errors, conversion notes), atomic writing,
folder listing, centre-crop/resize and preview grids. No torch import here."""
from frsengine.io.grid import make_grid, save_grid
from frsengine.io.images import (
    IMAGE_EXTENSIONS, MIN_SIDE, list_images, read_image, scan_folder, to_square, write_bytes_atomic,
    write_image,
)

__all__ = [
    "IMAGE_EXTENSIONS", "MIN_SIDE", "list_images", "make_grid", "read_image", "save_grid",
    "scan_folder", "to_square", "write_bytes_atomic", "write_image",
]
