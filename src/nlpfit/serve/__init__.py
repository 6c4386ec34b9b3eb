"""`nlpfit serve OUT`: a trained model behind a small JSON API over HTTP.

The model is loaded once. Each request is predicted the way `nlpfit predict` does it (sorted by
length, batched, inference mode) and gets the same rows back:

    POST /predict  {"inputs": ["text", ...], "options": {"aggregation": "first"}}
                   -> {"predictions": [row, ...]}        (the rows `nlpfit predict` prints)
    GET  /health   -> {"status": "ok", "task": "ner"}
    GET  /info     -> the task, the model folder, its evaluation metrics and the default options

`inputs` holds what `nlpfit predict --input` reads: texts, or objects such as
{"question": ..., "context": ...} for question answering. `options` overrides the server's
defaults (the prediction flags given to `nlpfit serve`) for one request. A bad request gets status
400 and {"error": "one line"}. Requests that arrive together (within --max-wait-ms) with the same
options run as one batch (`Batcher`); one batch at a time runs the model. Built on the standard
library's threaded HTTP server: no extra dependency.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from nlpfit import NlpfitError

MAX_BODY = 16 * 1024 * 1024


class Predictor:
    """A trained model folder, loaded once, and the defaults of its prediction options."""

    def __init__(self, out_dir: str, defaults: dict | None = None, max_wait_ms: float = 5.0,
                 max_batch_inputs: int = 256):
        from nlpfit.run import load_run, predict_options
        from nlpfit.tasks import make_task

        cfg, _ = load_run(out_dir)
        self.out_dir = out_dir
        self.task = make_task(cfg)
        self.defaults = {k: v for k, v in (defaults or {}).items() if v is not None}
        predict_options(self.task, self.defaults)  # the defaults must be valid options themselves
        self.loaded = self.task.load_predictor(out_dir)
        self.lock = threading.Lock()
        self.name = cfg.task or self.task.name
        self.batcher = Batcher(self.run, max_wait_ms, max_batch_inputs) if max_wait_ms > 0 else None

    def option_fields(self) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(self.task.PredictOptions)}

    def options(self, given) -> dict:
        """The request's options over the server's defaults, checked like the command line checks them."""
        if given is None:
            given = {}
        if not isinstance(given, dict):
            raise NlpfitError('"options" must be an object, e.g. {"aggregation": "first"}')
        known = self.option_fields()
        values = dict(self.defaults)
        for name, value in given.items():
            f = known.get(name)
            if f is None:
                raise NlpfitError(f"option {name!r}: {self.name} has no such prediction option "
                                  f"(it has {', '.join(sorted(known))})")
            if name == "batch_size" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise NlpfitError("option batch_size: a positive integer")
            values[name] = _checked(f, value)
        from nlpfit.config import Where
        from nlpfit.run import predict_options

        predict_options(self.task, values, Where(style="option"))  # every value in its declared range
        return values

    def predict(self, inputs, options) -> list[dict]:
        """The rows for one request: checked here, then batched with the requests arriving alongside."""
        if isinstance(inputs, (str, dict)):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            raise NlpfitError('"inputs" must be a non-empty list of texts (or of objects the task reads)')
        values = self.options(options)
        if self.batcher is None:
            return self.run(inputs, values)
        return self.batcher.submit(inputs, values)

    def run(self, inputs: list, values: dict) -> list[dict]:
        """Predict `inputs` with checked option values; one call at a time runs the model."""
        from nlpfit.run import predict_options

        with self.lock:
            popts = predict_options(self.task, values)
            return list(self.task.predict_with(self.loaded, inputs, popts))

    def info(self) -> dict:
        from nlpfit.run import predict_options
        from nlpfit.metrics import summary

        metrics_file = Path(self.out_dir) / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        defaults = dataclasses.asdict(predict_options(self.task, self.defaults))
        return {"task": self.name, "model": str(self.out_dir), "pipeline": self.task.pipeline,
                "eval": summary(metrics.get("eval") or {}),
                "options": defaults}


class Job:
    """One request waiting for its rows."""

    def __init__(self, inputs: list, values: dict):
        self.inputs, self.values = inputs, values
        self.key = json.dumps(values, sort_keys=True)  # only requests with equal options share a batch
        self.done = threading.Event()
        self.rows: list | None = None
        self.error: BaseException | None = None


class Batcher:
    """Dynamic batching: requests that arrive together run as one batch.

    A worker thread takes the oldest waiting request, gathers the requests with the same options
    that arrive within `max_wait_ms` (up to `max_inputs` inputs in all), predicts them in one call
    (sorted by length, padded batches) and hands each request its own rows. Many clients sending a
    text each then cost what one batched call costs, not one model call per text. When a merged
    batch fails, its requests run one by one, so an error reaches only the request that caused it.
    """

    def __init__(self, run, max_wait_ms: float, max_inputs: int):
        self.run, self.wait, self.max_inputs = run, max_wait_ms / 1000, max_inputs
        self.queue: queue.Queue[Job] = queue.Queue()
        self.held: list[Job] = []  # taken from the queue with other options: first in the next round
        threading.Thread(target=self._loop, name="nlpfit-batcher", daemon=True).start()

    def submit(self, inputs: list, values: dict) -> list[dict]:
        job = Job(inputs, values)
        self.queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.rows

    def _next(self, timeout: float | None) -> Job | None:
        if self.held:
            return self.held.pop(0)
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _loop(self) -> None:
        while True:
            first = self._next(None)
            jobs, n = [first], len(first.inputs)
            for job in list(self.held):  # held-back requests with these options join first
                if job.key == first.key and n + len(job.inputs) <= self.max_inputs:
                    self.held.remove(job)
                    jobs.append(job)
                    n += len(job.inputs)
            deadline = time.monotonic() + self.wait
            later: list[Job] = []
            while n < self.max_inputs and (left := deadline - time.monotonic()) > 0:
                try:
                    job = self.queue.get(timeout=left)
                except queue.Empty:
                    break
                if job.key == first.key and n + len(job.inputs) <= self.max_inputs:
                    jobs.append(job)
                    n += len(job.inputs)
                else:
                    later.append(job)
            self.held.extend(later)
            self._predict(jobs)

    def _predict(self, jobs: list[Job]) -> None:
        if len(jobs) > 1:
            try:
                rows = self.run([x for job in jobs for x in job.inputs], jobs[0].values)
            except Exception:  # noqa: BLE001 (re-run alone below, where the error belongs to one request)
                rows = None
            if rows is not None and len(rows) == sum(len(job.inputs) for job in jobs):
                start = 0
                for job in jobs:
                    job.rows = rows[start:start + len(job.inputs)]
                    start += len(job.inputs)
                    job.done.set()
                return
        for job in jobs:  # one request, or a merged batch that failed or did not give a row per input
            try:
                job.rows = self.run(job.inputs, job.values)
            except BaseException as exc:  # noqa: BLE001 (handed to the waiting request)
                job.error = exc
            job.done.set()


def _checked(f: dataclasses.Field, value):
    """One option value from JSON, checked against the option's type and choices."""
    kind = str(f.type).replace(" ", "").split("|")[0]
    expected = {"int": int, "float": (int, float), "bool": bool, "str": str}.get(kind)
    if expected is not None and (not isinstance(value, expected) or (kind != "bool" and isinstance(value, bool))):
        if not (value is None and "None" in str(f.type)):
            raise NlpfitError(f"option {f.name}: expected {kind}, got {json.dumps(value)}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise NlpfitError(f"option {f.name}: {json.dumps(value)} is not one of {', '.join(map(str, choices))}")
    return value


class Handler(BaseHTTPRequestHandler):
    server_version = "nlpfit"
    timeout = 60  # seconds a client may take to send its request
    predictor: Predictor  # set on the subclass that make_server builds

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/health":
            self._send(200, {"status": "ok", "task": self.predictor.name})
        elif self.path == "/info":
            self._send(200, self.predictor.info())
        else:
            self._send(404, {"error": f"no such endpoint: GET {self.path} (GET /health, GET /info, POST /predict)"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/predict":
            self._send(404, {"error": f"no such endpoint: POST {self.path} (POST /predict)"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length <= 0:
            self._send(411 if length == 0 else 400, {"error": "the request needs a JSON body with a Content-Length"})
            return
        if length > MAX_BODY:
            self._send(413, {"error": f"request body of {length} bytes is over the {MAX_BODY} byte limit"})
            return
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._send(400, {"error": f"the request body is not UTF-8 JSON: {exc}"})
            return
        if not isinstance(body, dict) or "inputs" not in body:
            self._send(400, {"error": 'the request body must be an object with "inputs" (and optionally "options")'})
            return
        unknown = set(body) - {"inputs", "options"}
        if unknown:
            self._send(400, {"error": f"unknown field(s) in the request: {', '.join(sorted(unknown))}"})
            return
        try:
            rows = self.predictor.predict(body["inputs"], body.get("options"))
        except NlpfitError as exc:
            self._send(400, {"error": str(exc)})
            return
        except Exception as exc:  # a bug, not bad input: keep serving, say what happened
            traceback.print_exc(file=sys.stderr)
            self._send(500, {"error": f"internal error: {type(exc).__name__}: {exc}"})
            return
        self._send(200, {"predictions": rows})

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # connections waiting to be accepted (the default 5 drops bursts: 1 s TCP retries)


def make_server(out_dir: str, host: str = "127.0.0.1", port: int = 8000, defaults: dict | None = None,
                quiet: bool = False, max_wait_ms: float = 5.0, max_batch_inputs: int = 256) -> ThreadingHTTPServer:
    """A server for the model in `out_dir` (port 0: any free port; see `server.server_address`);
    `max_wait_ms` 0 turns dynamic batching off (each request runs alone)."""
    predictor = Predictor(out_dir, defaults, max_wait_ms, max_batch_inputs)
    attrs = {"predictor": predictor}
    if quiet:
        attrs["log_message"] = lambda self, *args: None
    handler = type("NlpfitHandler", (Handler,), attrs)
    try:
        return Server((host, port), handler)
    except OSError as exc:
        raise NlpfitError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from exc


def serve(out_dir: str, host: str, port: int, defaults: dict | None = None, max_wait_ms: float = 5.0,
          max_batch_inputs: int = 256) -> None:
    from nlpfit.log import info

    server = make_server(out_dir, host, port, defaults, max_wait_ms=max_wait_ms, max_batch_inputs=max_batch_inputs)
    h, p = server.server_address[:2]
    info(f"serving {server.RequestHandlerClass.predictor.name} model {out_dir} on http://{h}:{p} "
         "(POST /predict, GET /health, GET /info); Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        info("stopped")
    finally:
        server.server_close()
