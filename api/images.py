"""An uploaded image's bytes, and a stored product's image for the web page.

An upload is capped at ``api_max_upload_bytes`` (413 above), like the URLs and catalog paths that
``niteru.write_inputs`` resolves. Decoding problems are left to the image model (refusals, 415/413/422).
"""

from __future__ import annotations

import mimetypes

from fastapi import UploadFile
from fastapi.responses import FileResponse, RedirectResponse, Response

from api.errors import ApiError
from niteru import fetch
from niteru.products import Product
from niteru.refusals import Refusal
from niteru.settings import Settings

# Declared types we accept for an upload; anything else (text/plain, application/pdf...) is 415 unread.
# application/octet-stream is what many clients send when they do not know; the bytes decide then.
ACCEPTED_UPLOAD_TYPES = ("image/", "application/octet-stream")


async def read_upload(file: UploadFile, settings: Settings) -> bytes:
    """The bytes of an uploaded file, refusing a declared non-image type and anything over the cap."""
    declared = (file.content_type or "application/octet-stream").lower()
    if not declared.startswith(ACCEPTED_UPLOAD_TYPES):
        raise ApiError(415, f"content type {declared!r} is not an image")
    buffer = fetch.CappedBuffer(settings.api_max_upload_bytes)
    while chunk := await file.read(fetch.CHUNK):
        buffer.add(chunk)  # a ``Refusal`` (413) past the cap
    return buffer.value()


def stored_image(product: Product, settings: Settings) -> Response:
    """A stored product's image for the web page: the catalog file, or a redirect to its http(s) URL.

    Only files inside the catalog folder are served (``fetch.catalog_path``: relative, no ``..``), and
    only image files; an uploaded image is not served (its vector is kept, and a small copy for the rebuild's
    look-alike work, ``niteru.photos``), so it is a 404.
    """
    ref = product.image
    if ref.startswith(("http://", "https://")):
        return RedirectResponse(ref, status_code=307)
    if ref.startswith("upload:"):
        raise ApiError(404, f"the image of {product.product_id!r} was uploaded; it is not served")
    try:
        path = fetch.catalog_path(ref, settings)
    except Refusal as exc:
        raise ApiError(404, f"the image of {product.product_id!r} is not available: {exc.message}") from None
    media_type, _ = mimetypes.guess_type(path.name)
    if media_type is None or not media_type.startswith("image/"):
        raise ApiError(404, f"the image of {product.product_id!r} is not an image file: {ref!r}")
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=300"})
