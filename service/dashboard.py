"""The live dashboard: one self-contained HTML page at ``/``.

The page (``service/static/dashboard.html``) carries its own CSS and JavaScript and loads nothing
from outside, because edge devices and CI are offline. It draws the loaded front, the model it is
for, and a policy explorer from the service's own JSON endpoints (``GET /front``, ``GET /policy``,
``GET /readyz``), so what it shows is by construction what the API answers; this module only serves
the file. The page follows a reload (every decision carries ``front_checksum``; ``/readyz`` is
polled) and shows the service DOWN when requests fail.

The route is left out of the OpenAPI schema: ``/openapi.json`` documents the JSON contract that
clients code against, and a human-facing page is not part of it.

Example:
    >>> from fastapi import FastAPI
    >>> app = FastAPI()
    >>> app.include_router(router)
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()

PAGE = "dashboard.html"


@lru_cache(maxsize=1)
def page_html() -> str:
    """The dashboard's HTML, read once from the package data (it never changes at run time)."""
    return (files("paretoctl.service") / "static" / PAGE).read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    """Serve the dashboard page.

    ``no-cache`` makes a browser revalidate after an upgrade of the service, so an old page is
    never paired with a newer API.
    """
    return HTMLResponse(page_html(), headers={"Cache-Control": "no-cache"})
