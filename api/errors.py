"""Errors of the API and their HTTP statuses; every error body is ``{"detail": ...}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from embedding.image.errors import ImageError
from niteru.refusals import Refusal, from_embedding
from niteru.similar import UnknownProductError
from niteru.store import StoreError, StoreUnavailableError


class ApiError(Exception):
    """An HTTP-level error with its status (a bad parameter, a missing part of the service), turned into
    ``{"detail": ...}``. What the core refuses is a ``niteru.refusals.Refusal``, rendered the same way."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


class ServiceUnavailableError(ApiError):
    def __init__(self, detail: str) -> None:
        super().__init__(503, detail)


def _json(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return _json(exc.status, exc.detail, exc.headers)

    async def refusal(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Refusal)
        return _json(exc.status, exc.detail)

    async def image_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ImageError)  # a search image the model refused
        return await refusal(request, from_embedding(exc))

    async def unknown_product(_: Request, exc: Exception) -> JSONResponse:
        return _json(404, str(exc))

    async def store_unavailable(_: Request, exc: Exception) -> JSONResponse:
        return _json(503, f"store unavailable: {exc}")

    async def store_error(_: Request, exc: Exception) -> JSONResponse:
        return _json(503, f"store error: {exc}")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(Refusal, refusal)
    app.add_exception_handler(ImageError, image_error)
    app.add_exception_handler(UnknownProductError, unknown_product)
    app.add_exception_handler(StoreUnavailableError, store_unavailable)
    app.add_exception_handler(StoreError, store_error)
