"""`nlpfit serve OUT`: a trained model behind a JSON API over HTTP (FastAPI on uvicorn).

The model is loaded once. Each request is predicted the way `nlpfit predict` does it (sorted by
length, batched, inference mode) and gets the same rows back:

    POST /predict         {"inputs": ["text", ...], "options": {"aggregation": "first"}}
                          -> {"predictions": [row, ...]}        (the rows `nlpfit predict` prints)
    POST /predict/stream  one input of a text-generation task (clm, translation, summarization):
                          server-sent events data: {"token": "..."} ..., then data: {"done": true, "row": {...}}
    GET  /health          {"status": "ok", "task": "ner"}
    GET  /info            the task, the model folder, its evaluation metrics, the default options, the limits
    GET  /examples        a few inputs to try (OUT/examples.json, else built in)
    GET  /metrics         Prometheus text: requests, errors, latency, batch sizes
    GET  /                the playground page;  GET /docs: the API's documentation;  GET /openapi.json

`inputs` holds what `nlpfit predict --input` reads: texts, or {"question": ..., "context": ...}
objects for question answering; the per-task request and row models (`schemas`) make
/openapi.json describe them. `options` overrides the server's defaults (the prediction flags given
to `nlpfit serve`) for one request. Client mistakes get a 4xx status and {"error": "one line"}.
Requests that arrive together (within --max-wait-ms) with the same options run as one batch; a
large request is served a chunk at a time between the others (`predictor.Batcher`); one model call
runs at a time, in a thread of its own, while the event loop keeps answering.
"""

from __future__ import annotations

import socket
import threading
import time

from nlpfit import NlpfitError
from nlpfit.serve.predictor import GENERATING, Batcher, Predictor, Ticket

__all__ = ["Batcher", "Predictor", "Server", "Ticket", "create_app", "make_server", "serve"]


def create_app(*args, **kwargs):
    from nlpfit.serve.app import create_app as create

    return create(*args, **kwargs)


def _bind(host: str, port: int) -> socket.socket:
    sock = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise NlpfitError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None
    sock.set_inheritable(True)
    return sock


class Server:
    """uvicorn serving the app on a socket bound when the server is made (port 0: any free port,
    see `port`). `serve_forever()` blocks (signal handling only in the main thread); `start()`
    runs it in a thread, `shutdown()` stops it: what tests need."""

    def __init__(self, app, sock: socket.socket, predictor: Predictor, quiet: bool):
        import uvicorn

        self.app, self.socket, self.predictor = app, sock, predictor
        self.server_address = sock.getsockname()[:2]
        host, self.port = self.server_address
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"
        config = uvicorn.Config(app, log_config=None, log_level="warning" if not quiet else "error",
                                access_log=False, lifespan="off", timeout_graceful_shutdown=5, server_header=False)
        self.uvicorn = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        self.uvicorn.run(sockets=[self.socket])

    def start(self, timeout: float = 30.0) -> "Server":
        self._thread = threading.Thread(target=self.serve_forever, name="nlpfit-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise NlpfitError("the server did not start")
            time.sleep(0.01)
        return self

    def shutdown(self) -> None:
        self.uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)

    def server_close(self) -> None:
        self.socket.close()

    def __enter__(self) -> "Server":
        return self.start() if self._thread is None else self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


def make_server(out_dir: str, host: str = "127.0.0.1", port: int = 8000, defaults: dict | None = None,
                quiet: bool = False, max_wait_ms: float = 5.0, max_batch_inputs: int = 256,
                max_request_inputs: int = 1024, api_key: str | None = None, body_timeout: float = 30.0,
                max_body: int | None = None) -> Server:
    """A server for the model in `out_dir`, its socket bound (port 0: any free port); `max_wait_ms`
    0 turns dynamic batching off (each model call holds one request); `quiet`: no access log."""
    from nlpfit.serve.app import MAX_BODY, create_app as create

    sock = _bind(host, port)  # first: a port in use fails before the model loads
    try:
        predictor = Predictor(out_dir, defaults, max_wait_ms, max_batch_inputs)
        app = create(predictor, api_key=api_key or None, max_request_inputs=max_request_inputs,
                     max_body=max_body or MAX_BODY, body_timeout=body_timeout, access_log=not quiet)
    except BaseException:
        sock.close()
        raise
    return Server(app, sock, predictor, quiet)


def serve(out_dir: str, host: str, port: int, defaults: dict | None = None, max_wait_ms: float = 5.0,
          max_batch_inputs: int = 256, max_request_inputs: int = 1024, api_key: str | None = None,
          access_log: bool = True) -> None:
    from nlpfit.allocator import keep_freed_memory
    from nlpfit.log import info, warn

    keep_freed_memory()
    server = make_server(out_dir, host, port, defaults, quiet=not access_log, max_wait_ms=max_wait_ms,
                         max_batch_inputs=max_batch_inputs, max_request_inputs=max_request_inputs, api_key=api_key)
    if not api_key and host not in ("127.0.0.1", "localhost", "::1"):
        warn(f"--host {host} without --api-key: whoever reaches this port can use the model")
    stream = ", POST /predict/stream" if server.predictor.kind in GENERATING else ""
    info(f"serving {server.predictor.name} model {out_dir} on {server.url} (playground /, API /docs; "
         f"POST /predict{stream}, GET /health, /info, /examples, /metrics); Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        info("stopped")
    finally:
        server.server_close()

