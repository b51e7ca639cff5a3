"""The dashboard's error answers and the forms shifters send.

Routes raise :class:`~starlette.exceptions.HTTPException` (plain text, as Starlette answers
it) or :class:`APIError` (a JSON ``{"error": ...}`` for the API); ``create_app`` installs the
handlers. Every POST is a urlencoded form from one of our own pages: a request whose
``Origin`` (or ``Referer``) names another site is refused, so a foreign page cannot act for a
shifter.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

MAX_FORM_BYTES = 8192
MAX_FIELD_CHARS = 500
MAX_NAME_CHARS = 80


class APIError(HTTPException):
    """An error of a JSON endpoint, answered as ``{"error": detail}``."""


async def plain_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code in (204, 304):
        return Response(status_code=error.status_code, headers=error.headers)
    return PlainTextResponse(error.detail, status_code=error.status_code, headers=error.headers)


async def json_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, APIError)
    return JSONResponse({"error": error.detail}, status_code=error.status_code)


EXCEPTION_HANDLERS = {HTTPException: plain_error, APIError: json_error}


def same_origin(request: Request) -> bool:
    """The form was sent by one of our own pages (Origin, else Referer, names our host)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return False
    host = request.headers.get("host", "")
    return urlsplit(source).netloc == host


async def shifter_form(request: Request) -> dict[str, str]:
    """The fields of a form from our own pages (first value of each, trimmed)."""
    if not same_origin(request):
        raise HTTPException(403, "refused: the form must come from this site\n")
    body = await request.body()  # a urlencoded form (no multipart parser needed)
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, "form too large\n")
    fields = parse_qs(body.decode(errors="replace"))
    return {key: values[0].strip()[:MAX_FIELD_CHARS] for key, values in fields.items()}


def see_page(path: str, message: str) -> RedirectResponse:
    """Back to ``path`` after a POST, with what happened for the page to show."""
    return RedirectResponse(f"{path}?message={message.replace(' ', '+')}", 303)
