"""The model behind `nlpfit serve`: `Predictor` (the one place that uses the task API) and `Batcher`
(dynamic batching with a fair queue). Neither knows about HTTP."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

#: the task kinds (transformers pipeline names) whose rows are generated text, streamable token by token
GENERATING = ("text-generation", "translation", "summarization")


class Predictor:
    """A trained model folder, loaded once, and the defaults of its prediction options.

    Everything the server needs from a task goes through this class: the model folder's run
    (`run.load_run`, `tasks.make_task`), the option values (`run.predict_options`), the loaded
    predictor (`task.load_predictor`), the rows (`task.predict_with`) and the flat evaluation
    metrics (`metrics.summary`).
    """

    def __init__(self, out_dir: str, defaults: dict | None = None, max_wait_ms: float = 5.0,
                 max_batch_inputs: int = 256):
        from nlpfit.run import load_run, predict_options
        from nlpfit.tasks import make_task

        cfg, _ = load_run(out_dir)
        self.out_dir = str(out_dir)
        self.task = make_task(cfg)
        self.name = cfg.task or self.task.name
        self.kind = self.task.pipeline  # token-classification, fill-mask, translation, ...
        self.defaults = {k: v for k, v in (defaults or {}).items() if v is not None}
        # the defaults must be valid options themselves; with none given, the run's --eval-batch-size
        self.batch_size = predict_options(self.task, self.defaults).batch_size
        self.loaded = self.task.load_predictor(out_dir)
        self.lock = threading.Lock()
        self.batcher = Batcher(self.run, max_wait_ms, max_batch_inputs, chunk_size=self.batch_size,
                               stream=self.stream_run)

    def option_fields(self) -> list[dataclasses.Field]:
        """The task's prediction options (`config.opt` fields: type, default, help, choices)."""
        return list(dataclasses.fields(self.task.PredictOptions))

    def option_defaults(self) -> dict:
        """Every prediction option's value when a request gives none: the task's, then the server's."""
        values = {f.name: f.default for f in self.option_fields() if f.default is not dataclasses.MISSING}
        values.update(self.defaults)
        return values

    def model_limits(self) -> dict:
        """Bounds the loaded model puts on option values: "positions", the most new tokens one
        generation can hold, and "vocab", the most candidates there are for a mask."""
        loaded = self.loaded
        model = loaded.model if hasattr(loaded, "model") else (loaded[0] if isinstance(loaded, (tuple, list)) else None)
        config = getattr(model, "config", None)
        if config is None:
            return {}
        seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        config = getattr(config, "decoder", None) or config if seq2seq else config
        limits = {}
        positions = getattr(config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 1:
            limits["positions"] = positions - 1 if seq2seq else positions  # seq2seq: the decoder's start token
        if isinstance(getattr(config, "vocab_size", None), int):
            limits["vocab"] = config.vocab_size
        return limits

    def check_options(self, values: dict) -> None:
        """A request's option values held to their declared ranges (the checker of the command line);
        a value outside one is an NlpfitError naming the option."""
        from nlpfit.config import Where
        from nlpfit.run import predict_options

        predict_options(self.task, values, Where(style="option"))

    def predict(self, inputs: list, values: dict) -> list[dict]:
        """The rows of `inputs` (checked option values), batched with the requests arriving alongside."""
        return self.batcher.submit(inputs, values).result()

    def run(self, inputs: list, values: dict) -> list[dict]:
        """Predict `inputs` with checked option values; one call at a time runs the model."""
        with self.lock:
            return self._rows(inputs, values)

    def _rows(self, inputs: list, values: dict) -> list[dict]:
        from nlpfit.run import predict_options

        popts = predict_options(self.task, {"batch_size": self.batch_size, **values})
        return list(self.task.predict_with(self.loaded, inputs, popts))

    def stream_run(self, inputs: list, values: dict, emit: Callable[[str], None],
                   stopped: Callable[[], bool]) -> list[dict]:
        """`run` for one input of a generating task, handing each new piece of text to `emit` as
        the model generates it (a streamer on the model's own `generate` call, so the row is the one
        `run` returns). Beam search and several sequences are not streamed: their row comes whole.
        `stopped()` true ends the generation early (the client went away)."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        class Pieces(BaseStreamer):
            """Decodes the tokens so far after each step and hands on the new text; waits while the
            text ends in a character cut in the middle (byte-level tokens) or rewrites earlier text."""

            def __init__(self, tokenizer):
                self.tokenizer, self.ids, self.sent, self.prompt = tokenizer, [], "", True

            def put(self, value):
                if self.prompt:  # generate first puts the prompt (or the decoder's start token)
                    self.prompt = False
                    return
                self.ids.extend(value.reshape(-1).tolist())
                text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
                if len(text) > len(self.sent) and text.startswith(self.sent) and not text.endswith("\ufffd"):
                    emit(text[len(self.sent):])
                    self.sent = text

            def end(self):
                pass

        class Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), stopped(), dtype=torch.bool, device=input_ids.device)

        # the loaded predictor: a text-generation pipeline (clm), or (model, tokenizer) (seq2seq)
        model, tokenizer = (self.loaded.model, self.loaded.tokenizer) if hasattr(self.loaded, "model") \
            else self.loaded[:2]
        generate = model.generate

        def streaming_generate(*args, **kwargs):
            config = model.generation_config
            beams = kwargs.get("num_beams") or config.num_beams or 1
            sequences = kwargs.get("num_return_sequences") or config.num_return_sequences or 1
            if beams == 1 and sequences == 1:
                kwargs["streamer"] = Pieces(tokenizer)
            kwargs["stopping_criteria"] = StoppingCriteriaList([*(kwargs.get("stopping_criteria") or []), Stop()])
            return generate(*args, **kwargs)

        with self.lock:
            model.generate = streaming_generate
            try:
                return self._rows(inputs, values)
            finally:
                del model.generate  # the class's generate again

    def info(self) -> dict:
        from nlpfit.metrics import summary

        metrics_file = Path(self.out_dir) / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        return {"task": self.name, "model": self.out_dir, "pipeline": self.kind,
                "eval": summary(metrics.get("eval") or {}), "options": self.option_defaults()}


def _size(item) -> int:
    """An input's length in characters (a text, or the texts of an object), for sorting by length."""
    if isinstance(item, str):
        return len(item)
    if isinstance(item, dict):
        return sum(len(v) for v in item.values() if isinstance(v, str))
    return 0


class Ticket:
    """One request in the queue: its inputs, cut into chunks of at most the batch size (longest
    first when there is more than one chunk, so each chunk pads little), and the rows as they come."""

    def __init__(self, inputs: list, values: dict, chunk_size: int, stream=None):
        self.inputs, self.values, self.stream = inputs, values, stream
        self.key = json.dumps(values, sort_keys=True, default=str)  # only equal options share a batch
        order = list(range(len(inputs)))
        if len(inputs) > chunk_size:
            order.sort(key=lambda i: -_size(inputs[i]))
        self.chunks = deque(order[i:i + chunk_size] for i in range(0, len(order), chunk_size))
        self.rows: list = [None] * len(inputs)
        self.left = len(self.chunks)
        self.error: BaseException | None = None
        self.cancelled = False
        self.finished = threading.Event()
        self._callbacks: list[Callable[[Ticket], None]] = []
        self._lock = threading.Lock()

    def add_done_callback(self, fn: Callable[[Ticket], None]) -> None:
        with self._lock:
            if not self.finished.is_set():
                self._callbacks.append(fn)
                return
        fn(self)

    def result(self, timeout: float | None = None) -> list[dict]:
        if not self.finished.wait(timeout):
            raise TimeoutError("the prediction did not finish in time")
        if self.error is not None:
            raise self.error
        return self.rows

    def _finish(self) -> None:
        with self._lock:
            self.finished.set()
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)

    def _fill(self, chunk: list[int], rows: list) -> None:
        for i, row in zip(chunk, rows):
            self.rows[i] = row
        self.left -= 1
        if self.left == 0 and self.error is None:
            self._finish()

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
            self.chunks.clear()
            self._finish()


class Batcher:
    """Dynamic batching behind a fair queue, with one worker thread running the model.

    Each request becomes a ticket of chunks (at most `chunk_size` inputs each). The worker takes the
    next chunk of the ticket at the head of the queue, then up to `max_inputs` inputs in all from
    the other waiting tickets with the same options (one chunk each), waiting up to `max_wait_ms`
    for requests to arrive, and predicts them in one call. A ticket with chunks left goes to the
    back of the queue, so a request of a thousand inputs is served a chunk at a time, with the
    small requests that arrive meanwhile answered between its chunks rather than after it.

    Many clients sending a text each then cost what one batched call costs, not one model call per
    text. When a merged batch fails, its chunks run one by one, so an error reaches only the request
    that caused it. `max_wait_ms` 0 turns merging off: every model call holds one request's chunk.
    A streaming ticket (one input, text handed out as it is generated) always runs alone.
    """

    def __init__(self, run, max_wait_ms: float, max_inputs: int, chunk_size: int = 64, stream=None,
                 observe: Callable[[int, float], None] | None = None):
        self.run, self.stream = run, stream
        self.wait, self.max_inputs = max_wait_ms / 1000, max_inputs
        self.merge = max_wait_ms > 0
        self.chunk_size = max(1, min(chunk_size, max_inputs))
        self.observe = observe  # called with (inputs, seconds) after each model call
        self.cond = threading.Condition()
        self.queue: deque[Ticket] = deque()  # tickets with chunks left, in serving order
        self.arrivals: list[Ticket] = []  # submitted since the worker last looked
        threading.Thread(target=self._loop, name="nlpfit-batcher", daemon=True).start()

    def submit(self, inputs: list, values: dict, stream=None) -> Ticket:
        """Queue a request; `stream` (emit) for one input of a generating task. Returns at once."""
        ticket = Ticket(inputs, values, self.chunk_size, stream)
        with self.cond:
            self.arrivals.append(ticket)
            self.cond.notify()
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """The client went away: drop the chunks not yet run (and stop a streaming generation)."""
        with self.cond:
            ticket.cancelled = True
            ticket.chunks.clear()

    def queued_inputs(self) -> int:
        with self.cond:
            tickets = list(self.queue) + self.arrivals
            return sum(len(c) for t in tickets for c in t.chunks)

    def _loop(self) -> None:
        while True:
            parts = self._gather()
            if parts:
                self._predict(parts)

    def _gather(self) -> list[tuple[Ticket, list[int]]]:
        with self.cond:
            while not self.queue and not self.arrivals:
                self.cond.wait()
            self.queue.extend(self.arrivals)
            self.arrivals.clear()
            while self.queue and not self.queue[0].chunks:  # cancelled or failed
                self.queue.popleft()
            if not self.queue:
                return []
            first = self.queue.popleft()
            parts = [(first, first.chunks.popleft())]
            back = [first] if first.chunks else []  # gave a chunk, have more: to the back of the queue
            if first.stream is None and self.merge:
                n, rest = self._join(first.key, parts, len(parts[0][1]), self.queue, back)
                self.queue = deque(rest)
                deadline = time.monotonic() + self.wait
                while n < self.max_inputs and (left := deadline - time.monotonic()) > 0:
                    if not self.arrivals:
                        self.cond.wait(left)
                    new, self.arrivals = self.arrivals, []
                    n, rest = self._join(first.key, parts, n, new, back)
                    self.queue.extend(rest)
            self.queue.extend(back)
            return parts

    def _join(self, key: str, parts: list, n: int, candidates, back: list) -> tuple[int, list]:
        """Add one chunk from each candidate ticket with these options while the batch has room;
        returns the inputs now in the batch and the candidates that keep their place in the queue."""
        rest = []
        for ticket in candidates:
            if not ticket.chunks:
                continue
            if ticket.key != key or ticket.stream is not None or n + len(ticket.chunks[0]) > self.max_inputs:
                rest.append(ticket)
                continue
            chunk = ticket.chunks.popleft()
            parts.append((ticket, chunk))
            n += len(chunk)
            if ticket.chunks:
                back.append(ticket)
        return n, rest

    def _call(self, fn, inputs: list, *args):
        start = time.perf_counter()
        try:
            return fn(inputs, *args)
        finally:
            if self.observe is not None:
                self.observe(len(inputs), time.perf_counter() - start)

    def _predict(self, parts: list[tuple[Ticket, list[int]]]) -> None:
        parts = [(t, c) for t, c in parts if not t.cancelled and t.error is None]
        if len(parts) == 1 and parts[0][0].stream is not None:
            ticket, chunk = parts[0]
            try:
                rows = self._call(self.stream, [ticket.inputs[i] for i in chunk], ticket.values, ticket.stream,
                                  lambda: ticket.cancelled)
                ticket._fill(chunk, rows)
            except BaseException as exc:  # noqa: BLE001 (handed to the waiting request)
                ticket._fail(exc)
            return
        if len(parts) > 1:
            inputs = [t.inputs[i] for t, chunk in parts for i in chunk]
            try:
                rows = self._call(self.run, inputs, parts[0][0].values)
            except Exception:  # noqa: BLE001 (re-run alone below, where the error belongs to one request)
                rows = None
            if rows is not None and len(rows) == len(inputs):
                start = 0
                for ticket, chunk in parts:
                    ticket._fill(chunk, rows[start:start + len(chunk)])
                    start += len(chunk)
                return
        for ticket, chunk in parts:  # one chunk, or a merged batch that failed or did not give a row per input
            if ticket.error is not None:
                continue
            try:
                ticket._fill(chunk, self._call(self.run, [ticket.inputs[i] for i in chunk], ticket.values))
            except BaseException as exc:  # noqa: BLE001 (handed to the waiting request)
                ticket._fail(exc)
