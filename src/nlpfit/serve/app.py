"""The HTTP side of `nlpfit serve`: a FastAPI app around a `Predictor`.

Request bodies are read, limited and validated here (not by FastAPI's body parsing) so that every
client mistake gets a 4xx status and one line: 401 without the API key, 413 over the size or
input-count limit, 415 for a body that is not JSON, 408 for a body that does not arrive, 400 for
JSON that does not parse (including lone surrogates and nesting too deep), 422 for JSON that is not
a request of the task (the per-task pydantic models of `schemas`) or inputs the task rejects.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
import time
import traceback
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from nlpfit import NlpfitError, __version__
from nlpfit.serve.examples import examples as find_examples
from nlpfit.serve.metrics import Metrics
from nlpfit.serve.predictor import GENERATING, Predictor
from nlpfit.serve.schemas import ErrorResponse, TaskSchemas

MAX_BODY = 16 * 1024 * 1024  # bytes
MAX_REQUEST_INPUTS = 1024
BODY_TIMEOUT = 30.0  # seconds a client may take to send its body
STATIC = Path(__file__).parent / "static"
_STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


class ClientError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    line = " ".join(str(message).split()) or "error"
    return JSONResponse({"error": line}, status_code=status, headers=headers)


def _shown(text: str, limit: int = 120) -> str:
    """Client-given text for a message or a log line: printable, bounded."""
    text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


class Health(BaseModel):
    status: str = Field(description='"ok" while the server answers.')
    task: str = Field(description="The task of the model.")


class Limits(BaseModel):
    max_request_inputs: int = Field(description="Most inputs in one request (413 beyond).")
    max_body_bytes: int = Field(description="Largest request body (413 beyond).")
    batch_size: int = Field(description="Inputs per model call for one request; a larger request is "
                                        "cut into chunks of this size, served in turn with other requests.")
    max_batch_inputs: int = Field(description="Most inputs one model call gathers from several requests.")
    max_wait_ms: float = Field(description="How long the oldest request waits for others to join its batch.")


class Info(BaseModel):
    task: str = Field(description="The task (ner, pos, chunk, mlm, qa, translation, summarization, clm).")
    model: str = Field(description="The model folder.")
    pipeline: str = Field(description="The task kind, as a transformers pipeline name.")
    eval: dict = Field(description="The model's evaluation metrics (OUT/metrics.json).")
    options: dict = Field(description="The default value of every prediction option.")
    auth: bool = Field(description="Whether POST /predict needs Authorization: Bearer KEY.")
    stream: bool = Field(description="Whether POST /predict/stream streams generated text.")
    limits: Limits


def create_app(predictor: Predictor, api_key: str | None = None, max_request_inputs: int = MAX_REQUEST_INPUTS,
               max_body: int = MAX_BODY, body_timeout: float = BODY_TIMEOUT, access_log: bool = True) -> FastAPI:
    """The app serving `predictor`; `api_key` set: POST /predict needs `Authorization: Bearer KEY`."""
    name, kind = predictor.name, predictor.kind
    schemas = TaskSchemas(name, kind, predictor.option_fields(), predictor.option_defaults(), max_request_inputs,
                          predictor.model_limits())
    item = TypeAdapter(schemas.item)
    streams = kind in GENERATING
    metrics = Metrics()
    batcher = predictor.batcher
    batcher.observe = metrics.batch
    endpoints = ["GET /", "GET /docs", "GET /openapi.json", "GET /health", "GET /info", "GET /examples",
                 "GET /metrics", "POST /predict"] + (["POST /predict/stream"] if streams else [])
    known = {e.split()[1] for e in endpoints}
    option_names = sorted(schemas.options.model_fields)
    pages = {p.name: p.read_bytes() for p in STATIC.iterdir() if p.suffix in _STATIC_TYPES}

    app = FastAPI(
        title=f"nlpfit: {name} model", version=__version__, docs_url=None, redoc_url=None,
        openapi_url="/openapi.json",
        description=f"`nlpfit serve {predictor.out_dir}`: the {name} model ({kind}) behind a JSON API. "
                    "POST /predict returns the rows `nlpfit predict` prints for the same inputs and options. "
                    "Errors are `{\"error\": \"one line\"}` with a 4xx status for client mistakes.")

    # ---- errors ------------------------------------------------------------------------------
    @app.exception_handler(ClientError)
    async def client_error(request: Request, exc: ClientError):
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        where = f"{request.method} {_shown(request.url.path)}"
        if exc.status_code == 404:
            message = f"no such endpoint: {where} ({', '.join(endpoints)})"
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            message = f"{where}: method not allowed (this endpoint takes {allowed or 'another method'})"
        else:
            message = str(exc.detail)
        return _error(exc.status_code, message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return _error(422, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]))

    # ---- request bodies ----------------------------------------------------------------------
    def check_key(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ClientError(401, "this server needs an API key: send the header Authorization: Bearer KEY",
                              {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(token.strip().encode("utf-8", "replace"), api_key.encode("utf-8")):
            raise ClientError(401, "wrong API key (Authorization: Bearer KEY)", {"WWW-Authenticate": "Bearer"})

    def check_json(request: Request) -> None:
        ctype = request.headers.get("content-type")
        if ctype is None:  # no header: read as JSON
            return
        media, _, params = ctype.partition(";")
        media = media.strip().lower()
        if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
            raise ClientError(415, f"Content-Type {_shown(media) or '(empty)'}: the body must be JSON "
                                   "(Content-Type: application/json)")
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
                raise ClientError(415, f"charset {_shown(value.strip())}: JSON bodies are UTF-8")

    async def read_body(request: Request) -> bytes:
        close = {"Connection": "close"}  # the rest of the body is not read: do not reuse the connection
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise ClientError(400, f"Content-Length {_shown(declared)}: not a number of bytes", close)
            if int(declared) > max_body:
                raise ClientError(413, f"request body of {int(declared)} bytes is over the {max_body} byte limit",
                                  close)

        async def read() -> bytes:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_body:
                    raise ClientError(413, f"request body over the {max_body} byte limit", close)
                chunks.append(chunk)
            return b"".join(chunks)

        try:
            return await asyncio.wait_for(read(), body_timeout)
        except asyncio.TimeoutError:
            raise ClientError(408, f"the request body did not arrive within {body_timeout:g} s "
                                   "(is Content-Length larger than the body?)", close) from None
        except ClientDisconnect:
            raise ClientError(400, "the client went away before sending its body", close) from None

    def describe(err: dict) -> str:
        loc, kind_, msg = err["loc"], err["type"], err["msg"]
        msg = msg.removeprefix("Value error, ")
        path = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))
        if not loc and kind_ in ("model_type", "model_attributes_type", "dict_type"):
            return 'the request body must be an object: {"inputs": [...], "options": {...}}'
        if loc == ("inputs",) and kind_ == "missing":
            return 'the request body must be an object with "inputs" (and optionally "options")'
        if loc == ("inputs",) and kind_ in ("too_short", "list_type"):
            return '"inputs" must be a non-empty list of inputs (texts, or objects the task reads)'
        if loc == ("options",):
            return '"options" must be an object, e.g. {"batch_size": 8}'
        if len(loc) == 1 and kind_ == "extra_forbidden":
            return f"unknown field in the request: {_shown(str(loc[0]))} (a request has inputs and options)"
        if len(loc) == 2 and loc[0] == "options":
            option = _shown(str(loc[1]))
            if kind_ == "extra_forbidden":
                return f"option {option!r}: {name} has no such prediction option (it has {', '.join(option_names)})"
            return f"option {option}: {msg[:1].lower() + msg[1:]}"
        if loc and loc[0] == "inputs" and kind_ in ("string_type", "model_type", "model_attributes_type"):
            what = ('an object {"question": ..., "context": ...}' if kind == "question-answering" else "a text")
            return f"{path}: {name} predicts on {'questions' if kind == 'question-answering' else 'texts'}: " \
                   f"expected {what}"
        return f"{path}: {msg[:1].lower() + msg[1:]}"

    def parse(raw: bytes):
        if not raw.strip():
            raise ClientError(400, 'the request needs a JSON body: {"inputs": [...], "options": {...}}')
        try:
            return schemas.request.model_validate_json(raw)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            bad = next((e for e in errors if e["type"] == "json_invalid"), None)
            if bad is not None:
                msg = bad["msg"].removeprefix("Invalid JSON: ")
                hint = " (a lone UTF-16 surrogate such as \\ud800 is not text)" if "surrogate" in msg or \
                    "hex escape" in msg else (" (nested too deep)" if "recursion" in msg else "")
                raise ClientError(400, f"the request body is not UTF-8 JSON: {msg}{hint}") from None
            raise ClientError(422, "; ".join(dict.fromkeys(describe(e) for e in errors[:3]))) from None

    def prepare(body) -> tuple[list, dict]:
        inputs = [x.model_dump(exclude_none=True) if isinstance(x, BaseModel) else x for x in body.inputs]
        if len(inputs) > max_request_inputs:
            raise ClientError(413, f"{len(inputs)} inputs: over the limit of {max_request_inputs} per request "
                                   "(--max-request-inputs); send them in several requests")
        given = body.options.model_dump(exclude_unset=True) if body.options is not None else {}
        values = {**predictor.defaults, **{k: v for k, v in given.items() if v is not None}}
        try:
            predictor.check_options(values)  # the ranges every option declares
        except NlpfitError as exc:
            raise ClientError(422, str(exc)) from None
        return inputs, values

    def failure(exc: BaseException) -> ClientError:
        if isinstance(exc, NlpfitError):
            return ClientError(422, str(exc))
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        return ClientError(500, f"internal error: {type(exc).__name__}: {exc}")

    def notify(loop: asyncio.AbstractEventLoop, fn, *args) -> None:
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the server stopped
            pass

    async def outcome(request: Request, ticket) -> list | None:
        """The ticket's rows; None when the client went away first (its chunks are then dropped)."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        ticket.add_done_callback(lambda _: notify(loop, lambda: done.done() or done.set_result(None)))
        try:
            while not (await asyncio.wait({done}, timeout=1.0))[0]:
                if await request.is_disconnected():
                    batcher.cancel(ticket)
                    return None
        except asyncio.CancelledError:
            batcher.cancel(ticket)
            raise
        if ticket.error is not None:
            raise failure(ticket.error)
        return ticket.rows

    # ---- the API -----------------------------------------------------------------------------
    errors_doc = {status: {"model": ErrorResponse, "description": what} for status, what in (
        (400, "The body is not JSON (or is nested too deep, or holds a lone surrogate)."),
        (401, "An API key is set and the request does not carry it."),
        (408, "The body did not arrive in time."), (413, "Body or input count over the limit."),
        (415, "The body is not sent as JSON."), (422, "Not a request of this task, or inputs the task rejects."))}
    request_body = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{schemas.request.__name__}"}}}}}

    @app.post("/predict", summary="Predict", openapi_extra=request_body,
              responses={200: {"model": schemas.response, "description": "One row per input."}, **errors_doc})
    async def predict(request: Request) -> Response:
        """The rows `nlpfit predict` prints for these inputs and options. Requests that arrive
        together with the same options run as one batch."""
        check_key(request)
        check_json(request)
        inputs, values = prepare(parse(await read_body(request)))
        rows = await outcome(request, batcher.submit(inputs, values))
        if rows is None:
            return Response(status_code=499)  # nobody is listening
        return JSONResponse({"predictions": rows})

    if streams:
        @app.post("/predict/stream", summary="Predict, streaming the generated text", openapi_extra=request_body,
                  response_class=EventStream,
                  responses={200: {"description": "Server-sent events, each `data: <JSON>` of the StreamEvent "
                                                  f"schema ({schemas.stream_event.__name__}): "
                                                  '{"token": "..."} as text is generated, then {"done": true, '
                                                  '"row": {...}} (the row of POST /predict).',
                                   "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                             **errors_doc})
        async def predict_stream(request: Request) -> Response:
            """One input; its generated text as server-sent events while the model writes it.
            Beam search and several sequences are not streamed: the row comes alone at the end."""
            check_key(request)
            check_json(request)
            inputs, values = prepare(parse(await read_body(request)))
            if len(inputs) != 1:
                raise ClientError(422, f"POST /predict/stream takes one input, got {len(inputs)} "
                                       "(POST /predict answers several)")
            loop = asyncio.get_running_loop()
            items: asyncio.Queue = asyncio.Queue()
            ticket = batcher.submit(inputs, values, stream=lambda text: notify(loop, items.put_nowait, text))
            ticket.add_done_callback(lambda _: notify(loop, items.put_nowait, None))
            try:
                while True:
                    try:
                        first = await asyncio.wait_for(items.get(), 1.0)
                        break
                    except asyncio.TimeoutError:
                        if await request.is_disconnected():
                            batcher.cancel(ticket)
                            return Response(status_code=499)
            except asyncio.CancelledError:
                batcher.cancel(ticket)
                raise
            if first is None and ticket.error is not None:
                raise failure(ticket.error)

            def event(data: dict) -> bytes:
                return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode("utf-8")

            async def events():
                piece, finished = first, False
                try:
                    while True:
                        if piece is not None:
                            yield event({"token": piece})
                            piece = await items.get()
                            continue
                        finished = True
                        if ticket.error is not None:
                            yield event({"error": " ".join(failure(ticket.error).message.split())})
                        else:
                            yield event({"done": True, "row": ticket.rows[0]})
                        return
                finally:
                    if not finished:
                        batcher.cancel(ticket)  # the client went away: stop generating

            return EventStream(events(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/health", summary="Health", responses={200: {"model": Health}})
    async def health() -> Response:
        return JSONResponse({"status": "ok", "task": name})

    info_body = {**predictor.info(), "auth": api_key is not None, "stream": streams,
                 "limits": {"max_request_inputs": max_request_inputs, "max_body_bytes": max_body,
                            "batch_size": batcher.chunk_size, "max_batch_inputs": batcher.max_inputs,
                            "max_wait_ms": batcher.wait * 1000}}

    @app.get("/info", summary="The model", responses={200: {"model": Info}})
    async def info() -> Response:
        """The task, the model folder, its evaluation metrics, the default options and the limits."""
        return JSONResponse(info_body)

    def example_input(value):
        if kind == "question-answering" and isinstance(value, dict):
            value = {k: value[k] for k in ("question", "context", "id") if k in value}
        try:
            item.validate_python(value)
        except ValidationError:
            return None
        return value

    examples_body = find_examples(predictor.out_dir, kind, example_input)
    examples_model = create_model(
        f"{schemas.request.__name__.removesuffix('PredictRequest')}Examples",
        __doc__='Inputs to try: OUT/examples.json when the model has one ("source": "examples.json"), '
                'else a few built in ("built-in").',
        source=(str, ...), examples=(list[schemas.item], ...))

    @app.get("/examples", summary="Inputs to try", responses={200: {"model": examples_model}})
    async def get_examples() -> Response:
        """A few inputs for the playground, from the model's own validation data when OUT has examples.json."""
        return JSONResponse(examples_body)

    @app.get("/metrics", summary="Prometheus metrics",
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "The Prometheus text format."}})
    async def get_metrics() -> Response:
        """Requests by endpoint and status, errors, request latency, inputs and seconds per model call."""
        text = metrics.render({"nlpfit_queued_inputs": ("Inputs waiting for the model.", batcher.queued_inputs())})
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    # ---- pages -------------------------------------------------------------------------------
    def page(filename: str) -> Response:
        return Response(pages[filename], media_type=_STATIC_TYPES[Path(filename).suffix],
                        headers={"Cache-Control": "no-cache"})

    html = {200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "An HTML page."}}

    @app.get("/", summary="The playground", response_class=HTMLResponse, responses=html)
    async def playground() -> Response:
        """A page to try the model: an input, its options, the row shown the way the task reads
        (entities highlighted, fill-mask candidates, streamed generations, the answer in its context)."""
        return page("index.html")

    @app.get("/docs", summary="This documentation", response_class=HTMLResponse, responses=html)
    async def docs() -> Response:
        """The API's documentation, rendered in the page from /openapi.json (no CDN: works offline)."""
        return page("docs.html")

    @app.get("/static/{filename}", include_in_schema=False)
    async def static(filename: str) -> Response:
        if filename not in pages:
            return _error(404, f"no such file: /static/{_shown(filename)}")
        return page(filename)

    # ---- the OpenAPI document: the request models are read by hand, so add their schemas ------
    plain_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            doc = plain_openapi()
            components = doc.setdefault("components", {}).setdefault("schemas", {})
            for model in (schemas.request, *([schemas.stream_event] if streams else [])):
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(schema.pop("$defs", {}))
                components[model.__name__] = schema
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi
    app.add_middleware(Observe, metrics=metrics, known=known, access_log=access_log)
    app.state.predictor, app.state.schemas, app.state.metrics = predictor, schemas, metrics
    return app


class Observe:
    """Counts every request (endpoint, method, status, seconds) and writes the access log line."""

    def __init__(self, app, metrics: Metrics, known: set, access_log: bool):
        self.app, self.metrics, self.known, self.access_log = app, metrics, known, access_log

    def endpoint(self, path: str) -> str:
        if path in self.known:
            return path
        return "/static" if path.startswith("/static/") else "other"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def observed_send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            seconds = time.perf_counter() - start
            self.metrics.request(self.endpoint(scope["path"]), scope["method"], status[0], seconds)
            if self.access_log:
                client = scope.get("client") or ("-", 0)
                path = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
                sys.stderr.write(f'{client[0]}:{client[1]} "{scope["method"]} {_shown(path, 200)}" '
                                 f'{status[0]} {seconds * 1000:.1f} ms\n')
