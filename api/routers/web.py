"""``/``: the web page, plain HTML with a little JavaScript calling the JSON API (no build step, no CDN).

Its files live in ``api/web/`` and are served as they are; ``create_app`` mounts that folder at
``/static``. The page holds no data of its own, so it is open even when reads need a key: the user types
the key into the page, which sends it with every call.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8")
