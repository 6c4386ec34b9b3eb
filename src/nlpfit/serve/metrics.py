"""`GET /metrics`: counters and histograms in the Prometheus text format (written by hand: no dependency)."""

from __future__ import annotations

import bisect
import threading
from collections import Counter

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Histogram:
    def __init__(self, buckets: tuple):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, total = [], 0
        sep = "," if labels else ""
        for bound, n in zip((*self.buckets, "+Inf"), self.counts):
            total += n
            le = bound if isinstance(bound, str) else f"{bound:g}"
            out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {total}')
        braces = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{braces} {self.sum:.6g}", f"{name}_count{braces} {self.count}"]
        return out


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """What the server counts: requests by endpoint, method and status, errors, request latency,
    and the model calls (inputs per call, seconds per call)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: Counter = Counter()
        self.latency: dict[str, Histogram] = {}
        self.batch_inputs = Histogram(SIZE_BUCKETS)
        self.batch_seconds = Histogram(LATENCY_BUCKETS)

    def request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[(endpoint, method, status)] += 1
            self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def batch(self, inputs: int, seconds: float) -> None:
        with self.lock:
            self.batch_inputs.observe(inputs)
            self.batch_seconds.observe(seconds)

    def render(self, gauges: dict[str, tuple[str, float]]) -> str:
        """The text format; `gauges`: name -> (help, value)."""
        with self.lock:
            lines = ["# HELP nlpfit_requests_total HTTP requests answered, by endpoint, method and status.",
                     "# TYPE nlpfit_requests_total counter"]
            for (endpoint, method, status), n in sorted(self.requests.items()):
                lines.append(f'nlpfit_requests_total{{endpoint="{_label(endpoint)}",method="{_label(method)}",'
                             f'status="{status}"}} {n}')
            errors: Counter = Counter()
            for (endpoint, _, status), n in self.requests.items():
                if status >= 400:
                    errors[(endpoint, "client" if status < 500 else "server")] += n
            lines += ["# HELP nlpfit_request_errors_total Requests answered with an error status (client: 4xx, "
                      "server: 5xx).", "# TYPE nlpfit_request_errors_total counter"]
            for (endpoint, kind), n in sorted(errors.items()):
                lines.append(f'nlpfit_request_errors_total{{endpoint="{_label(endpoint)}",kind="{kind}"}} {n}')
            lines += ["# HELP nlpfit_request_duration_seconds Time from the request to the end of the answer.",
                      "# TYPE nlpfit_request_duration_seconds histogram"]
            for endpoint, hist in sorted(self.latency.items()):
                lines += hist.lines("nlpfit_request_duration_seconds", f'endpoint="{_label(endpoint)}"')
            lines += ["# HELP nlpfit_batch_inputs Inputs per model call (dynamic batching merges requests).",
                      "# TYPE nlpfit_batch_inputs histogram", *self.batch_inputs.lines("nlpfit_batch_inputs"),
                      "# HELP nlpfit_batch_duration_seconds Seconds per model call.",
                      "# TYPE nlpfit_batch_duration_seconds histogram",
                      *self.batch_seconds.lines("nlpfit_batch_duration_seconds")]
        for name, (help_text, value) in gauges.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        return "\n".join(lines) + "\n"
