"""Catalog images written through the API: kept in a folder the server owns, named by it.

A product's images live in ``<root>/<digest of the product id>/<digest of the content>.<ext>``:
never the client's file name, so nothing a client sends becomes a path, and the same photo
sent twice is one file (a retried write finds it there). Files of a product's old version are
removed only after its new rows are committed, so a crash at any point leaves the images of
whichever version the index holds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from fashion_search.errors import UsageError

# Fingerprints of images written through the API start with this: an index run over a catalog
# folder or CSV leaves them alone rather than removing them as "no longer in the catalog".
UPLOAD_FINGERPRINT = "upload:"
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


def content_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class UploadFolder:
    """The folder where a server keeps the catalog images written to it."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the uploads folder {self.root}: {exc.strerror or exc}") from None

    def product_dir(self, product_id: str) -> Path:
        return self.root / hashlib.sha256(product_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]

    def save(self, product_id: str, data: bytes, image_format: str) -> Path:
        """Keep ``data`` (an image of ``image_format``, as Pillow names it) for the product;
        the file's path. Written whole or not at all."""
        folder = self.product_dir(product_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{content_digest(data)[:40]}.{EXTENSIONS.get(image_format, 'img')}"
        if path.is_file() and path.stat().st_size == len(data):
            return path
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path

    def keep_only(self, product_id: str, paths: set[Path]) -> None:
        """Remove the product's files other than ``paths`` (all of them, and its folder, when
        ``paths`` is empty): the images of versions the index no longer holds."""
        folder = self.product_dir(product_id)
        if not folder.is_dir():
            return
        if not paths:
            shutil.rmtree(folder, ignore_errors=True)
            return
        for path in folder.iterdir():
            if path not in paths:
                path.unlink(missing_ok=True)
