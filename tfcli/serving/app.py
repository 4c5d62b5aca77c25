"""The HTTP application: LibreTranslate's `/translate` and `/languages`, the native
`/v1/translate`, `/health` and `/info`, over one batching worker.

Handlers never decode: they check the request, hand its lines to the worker and await the
answer, so the event loop keeps serving while a batch is translated. Every error is a JSON
body `{"error": "..."}` with a 4xx or 5xx status.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tfcli.config import DecodeConfig, ServeConfig
from tfcli.errors import ConfigError
from tfcli.serving import schemas
from tfcli.serving.schemas import RequestError
from tfcli.serving.worker import BatchWorker, Job, ShuttingDown
from tfcli.translation.translator import Translator, decode_settings

KEY_HEADERS = "the api_key field, an Authorization: Bearer header or an X-API-Key header"


def create_app(translator: Translator, settings: ServeConfig, facts: dict[str, Any]) -> FastAPI:
    """The application serving `translator`; `facts` (tfcli.run_info.describe) for /info."""
    service = Service(translator, settings, facts)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.worker.start()
        yield
        await asyncio.to_thread(service.worker.stop)

    app = FastAPI(title="tfcli", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_exception_handler(RequestError, _refused)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    app.add_api_route("/translate", service.libretranslate, methods=["POST"])
    app.add_api_route("/v1/translate", service.native, methods=["POST"])
    app.add_api_route("/languages", service.languages, methods=["GET"])
    app.add_api_route("/info", service.info, methods=["GET"])
    app.add_api_route("/health", service.health, methods=["GET"])
    return app


async def _refused(request: Request, e: Exception) -> JSONResponse:
    assert isinstance(e, RequestError)
    return JSONResponse({"error": str(e)}, status_code=e.status)


async def _http_error(request: Request, e: Exception) -> JSONResponse:
    """Starlette's own errors (404, 405) in the same shape as ours."""
    assert isinstance(e, HTTPException)
    return JSONResponse({"error": str(e.detail)}, status_code=e.status_code)


async def _internal_error(request: Request, e: Exception) -> JSONResponse:
    """A failure of ours (logged by the worker or uvicorn), still answered in JSON."""
    return JSONResponse({"error": f"internal error: {type(e).__name__}"}, status_code=500)


class Service:
    """The endpoints over one model and its worker."""

    def __init__(self, translator: Translator, settings: ServeConfig, facts: dict[str, Any]):
        self.translator, self.settings, self.facts = translator, settings, facts
        self.worker = BatchWorker(
            translator, settings.batch_wait_ms / 1000, settings.batch_requests
        )
        self.source, self.target = facts["languages"]["source"], facts["languages"]["target"]

    async def libretranslate(self, request: Request) -> dict[str, Any]:
        body = schemas.validate(schemas.LibreTranslateRequest, await self._body(request))
        if body.source not in ("auto", self.source):
            raise RequestError(400, f"source: {body.source!r}: this model translates {self.source}")
        if body.target != self.target:
            raise RequestError(
                400, f"target: {body.target!r}: this model translates into {self.target}"
            )
        search = _search(self.translator, None, body.alternatives + 1, "alternatives")
        texts = await self._translate(schemas.texts_of(body.q), search, False, "q")
        return schemas.libretranslate_answer(body, texts)

    async def native(self, request: Request) -> dict[str, Any]:
        body = schemas.validate(schemas.NativeRequest, await self._body(request))
        search = _search(self.translator, body.beam, body.n_best, "n_best")
        texts = await self._translate(schemas.texts_of(body.text), search, body.alignment, "text")
        return schemas.native_answer(body, texts, search.n_best)

    async def languages(self, request: Request) -> list[dict[str, Any]]:
        self._authorize(_header_key(request))
        return [{"code": self.source, "name": self.source, "targets": [self.target]}]

    async def info(self, request: Request) -> dict[str, Any]:
        self._authorize(_header_key(request))
        return {k: v for k, v in self.facts.items() if k not in ("path", "files")}

    async def health(self) -> dict[str, Any]:
        w = self.worker
        counts = {"requests": w.requests, "batches": w.batches, "translating": w.translating}
        return {"status": "ok", **counts, "waiting": w.waiting}

    def _authorize(self, presented: object) -> None:
        if self.settings.api_key is not None:
            _check_key(self.settings.api_key, presented)

    async def _body(self, request: Request) -> dict[str, Any]:
        """The request's fields, read up to a size that `max_chars` of text can need; the
        key, from a header or the body, checked."""
        s = self.settings
        header = _header_key(request)
        if header is not None:
            self._authorize(header)  # before reading what a stranger sent
        limit = 6 * s.max_chars + 8 * s.max_lines + 65536  # room for JSON escapes and quotes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"request body over {limit} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise RequestError(413, f"request body over {limit} bytes")
        try:
            data = schemas.parse_body(bytes(body), request.headers.get("content-type", ""))
        except RequestError:
            if header is None:
                self._authorize(None)
            raise
        if header is None:
            self._authorize(data.get("api_key"))
        return data

    async def _translate(self, texts: list[str], search: DecodeConfig, alignment: bool, field: str):
        """Each text's line results, from the worker."""
        schemas.check_texts(texts, field, self.settings.max_chars, self.settings.max_lines)
        lines, counts = schemas.split_lines(texts)
        try:
            results = await asyncio.wrap_future(self.worker.submit(Job(lines, search, alignment)))
        except ShuttingDown as e:
            raise RequestError(503, str(e)) from None
        return schemas.join_lines(results, counts)


def _search(translator: Translator, beam: int | None, n_best: int | None, field: str):
    """The run's search settings with a request's beam and n-best, or a 400 naming the field."""
    try:
        return decode_settings(translator.settings, beam=beam, n_best=n_best)
    except ConfigError as e:
        message = str(e).replace("decode.n_best", field).replace("decode.", "")
        raise RequestError(400, message) from None


def _header_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def _check_key(expected: str, presented: object) -> None:
    if presented is None:
        raise RequestError(401, f"an API key is required: send it as {KEY_HEADERS}")
    if not isinstance(presented, str) or not hmac.compare_digest(
        presented.encode(), expected.encode()
    ):
        raise RequestError(403, "the API key is not valid")
