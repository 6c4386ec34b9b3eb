"""The run report (OUT/report.html): one self-contained page that shows how a run went.

`write_report(OUT)` reads what a run saved and writes OUT/report.html: a header with the task, the
model and the headline metric; the training loss per logging step with the learning rate; the main
metric at every evaluation; for token classification the per-type scores and a confusion matrix of
entity types; sample predictions; then the configuration, the library versions and the timing.  The
plots are matplotlib SVG written into the page, the CSS is inline: the page loads nothing.

What it reads from OUT:

- `run.json` and `metrics.json` (required), as `nlpfit train` writes them.  `metrics.json` may hold
  `"log"`: one entry per logging step, `{"step", "epoch", "loss", "learning_rate", "grad_norm",
  "tokens_per_second"}` (any of them may be missing); without it the loss curve shows the mean training
  loss of each evaluation period from `"history"`, and the page says so.
- `confusion.json` (optional, token classification): `{"labels": [entity types, "O" included],
  "matrix": [[count, ...], ...]}` where `matrix[i][j]` counts the tokens whose reference type is
  `labels[i]` and whose predicted type is `labels[j]`; `metrics.tagging.type_confusion` builds it from tag sequences.
- `predictions.jsonl` (seq2seq): rows `{"source", "reference", "prediction"}`; the first ten are shown.
- `predictions.json` (QA): `{id: answer text}`, or `{id: {"prediction": ..., "references": [...]}}`.
- `samples.json` (optional, any task; e.g. CLM generations or MLM fill-mask): a list of
  `{"input": text, "output": text | [text, ...] | [{"token_str" or "sequence", "score"}, ...]}`.
  The `samples` argument of `write_report` (a callable OUT -> such rows) takes its place, so the
  caller can run the model while the report itself never loads one.
"""

from __future__ import annotations

import io
import json
import math
import re
from html import escape
from pathlib import Path
from typing import Callable

from nlpfit import NlpfitError

#: metrics for which lower is better (besides a task's own main metric, when its task says so)
LOWER_IS_BETTER = {"perplexity", "loss"}
_FALLBACK_METRICS = ("f1", "bleu", "rougeL", "perplexity", "exact_match", "accuracy", "loss")
SAMPLE_ROWS = 10
SMOOTH_FROM = 60  # logged steps from which the loss curve is smoothed

_BLUE, _ORANGE, _GREEN, _GREY = "#2563eb", "#ea580c", "#059669", "#6b7280"


# ---- reading OUT -------------------------------------------------------------------------------------
def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise NlpfitError(f"{path}: not UTF-8 (byte 0x{exc.object[exc.start]:02x})") from None
    except json.JSONDecodeError as exc:
        raise NlpfitError(f"{path}: invalid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None


def load_run_files(out_dir) -> tuple[dict, dict]:
    """run.json and metrics.json of OUT, or an NlpfitError naming what is wrong."""
    out = Path(out_dir)
    if not out.is_dir():
        raise NlpfitError(f"{out_dir}: no such folder")
    if not (out / "run.json").is_file():
        raise NlpfitError(f"{out_dir}: not an nlpfit folder (no run.json)")
    run = _read_json(out / "run.json")
    if not isinstance(run, dict):
        raise NlpfitError(f"{out / 'run.json'}: expected a JSON object")
    if not (out / "metrics.json").is_file():
        raise NlpfitError(f"{out / 'metrics.json'}: no such file (the run did not finish?)")
    metrics = _read_json(out / "metrics.json")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("history", []), list):
        raise NlpfitError(f"{out / 'metrics.json'}: expected a JSON object with a \"history\" list")
    return run, metrics


def _optional(path: Path, notes: list[str]):
    """An optional file's JSON (a .jsonl file: its list of rows), None when absent; an unreadable one
    is reported in the page instead of failing the report."""
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        notes.append(f"{path.name} could not be read ({exc}); it is left out.")
        return None


# ---- numbers -----------------------------------------------------------------------------------------
def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def fmt(v) -> str:
    """A metric value for people: 4 decimals below 10, 2 above, integers as they are."""
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if v != 0 and abs(v) < 1e-3:
            return f"{v:.2e}"
        if abs(v) < 10:
            return f"{v:.4f}"
        if abs(v) < 1000:
            return f"{v:.2f}"
        if abs(v) < 1e9:
            return f"{v:,.0f}"
        return f"{v:.4g}"
    return str(v)


def fmt_epoch(v) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".") if isinstance(v, float) else fmt(v)


def fmt_rate(v) -> str:
    """A throughput: no decimals from 100 up, two below."""
    if not _finite(v) or isinstance(v, bool):
        return fmt(v)
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"


def _duration(seconds) -> str:
    if not _num(seconds):
        return ""
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(round(s), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def _finite(v) -> bool:
    return _num(v) and math.isfinite(v)


def _scalars(metrics: dict | None) -> dict:
    return {k: v for k, v in (metrics or {}).items() if _num(v)}


def main_metric(task: str, metrics: dict) -> str | None:
    """The task's main metric, or the first known one among the keys present."""
    evals = [metrics.get("test") or {}, metrics.get("eval") or {}] + [h.get("eval") or {} for h in
                                                                     metrics.get("history", [])]
    present = {k for m in evals for k, v in m.items() if _num(v)}
    from nlpfit.tasks import REGISTRY, task_class

    own = task_class(task).main_metric if task in REGISTRY else None  # the metric the task is judged by
    for key in (own,) + _FALLBACK_METRICS:
        if key in present:
            return key
    return None


# ---- plots -------------------------------------------------------------------------------------------
def _svg(fig, salt: str) -> str:
    """A matplotlib figure as an inline <svg> element (text kept as text, no metadata)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    # fixed pt sizes -> scale with the page; the viewBox keeps the aspect ratio
    svg = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 class="plot" role="img"', svg, count=1)
    return svg


def _figure(width: float = 5.4, height: float = 3.3):
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(width, height))
    ax = fig.add_subplot()
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#9ca3af")
    ax.tick_params(colors="#374151", labelsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
    ax.grid(True, color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    return fig, ax


def _points(rows: list[dict], x: str, y: str) -> tuple[list, list]:
    pts = [(r[x], r[y]) for r in rows if _finite(r.get(x)) and _finite(r.get(y))]
    return [p[0] for p in pts], [p[1] for p in pts]


def _log_scale_if_wide(ax, values) -> None:
    pos = [v for v in values if v > 0]
    if pos and len(pos) == len(values) and max(pos) / min(pos) > 50:
        ax.set_yscale("log")


def _smooth(values: list[float]) -> list[float]:
    """A centred moving mean over about a thirtieth of the curve (the window shrinks at the ends)."""
    import numpy as np

    half = max(1, len(values) // 60)
    v = np.asarray(values, dtype=float)
    sums = np.concatenate([[0.0], np.cumsum(v)])
    idx = np.arange(len(v))
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, len(v))
    return list((sums[hi] - sums[lo]) / (hi - lo))


def _short_sci(v, _pos=None) -> str:
    """3e-3 rather than 0.003 for learning rates."""
    if v == 0:
        return "0"
    mantissa, exp = f"{v:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"


def loss_plot(metrics: dict) -> tuple[str | None, str | None]:
    """The training loss (and learning rate) per logged step, the validation loss at each evaluation.
    Returns (svg, note)."""
    log = [r for r in metrics.get("log") or [] if isinstance(r, dict)]
    history = [h for h in metrics.get("history") or [] if isinstance(h, dict)]
    note = None
    if log and _points(log, "step", "loss")[0]:
        steps, loss = _points(log, "step", "loss")
        label = "training loss"
    else:
        steps, loss = _points(history, "step", "train_loss")
        label = "training loss (per evaluation period)"
        note = ("This run has no per-step log (metrics.json \"log\"): the training curve shows the mean "
                "training loss of each evaluation period from metrics.json \"history\".")
    eval_rows = [{"step": h.get("step"), "loss": (h.get("eval") or {}).get("loss")} for h in history]
    eval_steps, eval_loss = _points(eval_rows, "step", "loss")
    if not steps and not eval_steps:
        return None, "No losses were recorded for this run."
    fig, ax = _figure()
    if len(steps) >= SMOOTH_FROM:  # noisy per-step losses: faint, with a smoothed curve on top
        ax.plot(steps, loss, color=_BLUE, linewidth=0.8, alpha=0.3)
        ax.plot(steps, _smooth(loss), color=_BLUE, linewidth=1.8, label=f"{label} (smoothed)")
    elif steps:
        ax.plot(steps, loss, color=_BLUE, linewidth=1.6, marker="o" if len(steps) < 30 else None,
                markersize=4, label=label)
    if eval_steps:
        ax.plot(eval_steps, eval_loss, color=_GREEN, linewidth=1.2, linestyle="--", marker="s", markersize=5,
                label="validation loss")
    ax.set_xlabel("optimizer step", fontsize=11, color="#374151")
    ax.set_ylabel("loss", fontsize=11, color="#374151")
    _log_scale_if_wide(ax, loss + eval_loss)
    handles, labels = ax.get_legend_handles_labels()
    lr_steps, lr = _points(log, "step", "learning_rate")
    if lr_steps:
        from matplotlib.ticker import FuncFormatter

        ax2 = ax.twinx()
        ax2.plot(lr_steps, lr, color=_ORANGE, linewidth=1.2, alpha=0.85, label="learning rate")
        ax2.set_ylabel("learning rate", fontsize=11, color=_ORANGE)
        ax2.tick_params(axis="y", colors=_ORANGE, labelsize=10)
        ax2.yaxis.set_major_formatter(FuncFormatter(_short_sci))
        ax2.set_ylim(bottom=0)
        for side in ("top", "left", "bottom"):
            ax2.spines[side].set_visible(False)
        ax2.spines["right"].set_color(_ORANGE)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=9, frameon=False, loc="lower left", bbox_to_anchor=(0, 1.0),
              ncol=len(handles), borderaxespad=0.2, handlelength=1.8)
    return _svg(fig, "loss"), note


def grad_norm_plot(metrics: dict) -> str | None:
    steps, norms = _points([r for r in metrics.get("log") or [] if isinstance(r, dict)], "step", "grad_norm")
    if len(steps) < 2:
        return None
    fig, ax = _figure(5.4, 2.6)
    ax.plot(steps, norms, color=_GREY, linewidth=1.2)
    ax.set_xlabel("optimizer step", fontsize=11, color="#374151")
    ax.set_ylabel("gradient norm", fontsize=11, color="#374151")
    _log_scale_if_wide(ax, norms)
    return _svg(fig, "grad-norm")


def metric_plot(metrics: dict, key: str) -> str | None:
    """The main metric at every evaluation (the x axis: optimizer steps, or epochs when no steps)."""
    rows = [{"step": h.get("step"), "epoch": h.get("epoch"), key: (h.get("eval") or {}).get(key)}
            for h in metrics.get("history") or [] if isinstance(h, dict)]
    x_key = "step" if any(_finite(r["step"]) and r["step"] > 0 for r in rows) else "epoch"
    xs, ys = _points(rows, x_key, key)
    if not xs:
        return None
    fig, ax = _figure()
    ax.plot(xs, ys, color=_BLUE, linewidth=1.8, marker="o", markersize=6)
    best = (min if key in LOWER_IS_BETTER else max)(range(len(ys)), key=ys.__getitem__)
    ax.plot([xs[best]], [ys[best]], marker="o", markersize=11, markerfacecolor="none", markeredgecolor=_ORANGE,
            markeredgewidth=2, linestyle="none", label=f"best: {fmt(ys[best])}")
    # values beside the points: all of a few, else the first, the best and the last
    shown = range(len(xs)) if len(xs) <= 6 else sorted({0, best, len(xs) - 1})
    for i in shown:
        ax.annotate(fmt(ys[i]), (xs[i], ys[i]), textcoords="offset points", xytext=(0, 8), ha="center",
                    fontsize=8, color="#374151")
    if key in LOWER_IS_BETTER:
        _log_scale_if_wide(ax, ys)
    ax.margins(x=0.06, y=0.18)
    ax.set_xlabel("optimizer step" if x_key == "step" else "epoch", fontsize=11, color="#374151")
    ax.set_ylabel(f"validation {key}", fontsize=11, color="#374151")
    ax.legend(fontsize=9, frameon=False, loc="best")
    return _svg(fig, "metric")


def confusion_plot(conf: dict) -> str:
    """A heatmap of a confusion.json object: colour = share of the reference row, text = count."""
    import numpy as np

    labels = [str(x) for x in conf["labels"]]
    m = np.asarray(conf["matrix"], dtype=float)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    side = min(9.0, 1.6 + 0.55 * n)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center", fontsize=9)
    ax.set_yticks(range(n), labels, fontsize=9)
    ax.set_xlabel("predicted type", fontsize=10)
    ax.set_ylabel("reference type", fontsize=10)
    if n <= 16:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{int(m[i, j]):,}", ha="center", va="center", fontsize=8 if n > 8 else 9,
                        color="white" if share[i, j] > 0.55 else "#111827")
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("share of the reference type's tokens", fontsize=9)
    bar.ax.tick_params(labelsize=8)
    return _svg(fig, "confusion")


def _valid_confusion(conf) -> bool:
    if not isinstance(conf, dict) or not isinstance(conf.get("labels"), list) or not conf["labels"]:
        return False
    rows = conf.get("matrix")
    n = len(conf["labels"])
    return (isinstance(rows, list) and len(rows) == n
            and all(isinstance(r, list) and len(r) == n and all(_num(v) for v in r) for r in rows))


# ---- HTML pieces -------------------------------------------------------------------------------------
def _e(v) -> str:
    return escape(str(v), quote=True)


def _table(header: list[str], rows: list[list], cls: str = "") -> str:
    """A table of already-escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _kv_table(items, cls: str = "kv", per_row: int = 1) -> str:
    """A table of (key, escaped value) pairs, `per_row` pairs to a row."""
    items = list(items)
    rows = []
    for i in range(0, len(items), per_row):
        chunk = items[i:i + per_row]
        cells = "".join(f"<th>{_e(k)}</th><td>{v}</td>" for k, v in chunk)
        rows.append(f"<tr>{cells}{'<th></th><td></td>' * (per_row - len(chunk))}</tr>")
    return f'<table class="{cls}"><tbody>{"".join(rows)}</tbody></table>'


def _value(v) -> str:
    """A configuration value, escaped: lists joined, dicts as compact JSON, None as a dash."""
    if v is None:
        return '<span class="muted">&mdash;</span>'
    if isinstance(v, bool):
        return _e(str(v).lower())
    if isinstance(v, (list, tuple)):
        return "".join(f'<span class="chip">{_path(x)}</span>' for x in v) or '<span class="muted">[]</span>'
    if isinstance(v, dict):
        return f"<code>{_e(json.dumps(v, ensure_ascii=False))}</code>"
    return _path(v)


def _path(v) -> str:
    """Escaped text that may wrap after a slash (long paths in narrow cells)."""
    return _e(v).replace("/", "/<wbr>")


def _section(title: str, body: str, sid: str) -> str:
    return f'<section id="{sid}"><h2>{_e(title)}</h2>{body}</section>'


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _caption(text: str) -> str:
    return f'<p class="caption">{_e(text)}</p>'


def _bar(v) -> str:
    if not _finite(v):
        return ""
    pct = max(0.0, min(1.0, float(v))) * 100
    return f'<span class="bar"><span style="width:{pct:.1f}%"></span></span>'


def _f3(v) -> str:
    return f"{v:.3f}" if _finite(v) else fmt(v)


def _per_type_table(m: dict) -> str:
    rows = []
    per_type = m["per_type"]
    for name, s in per_type.items():
        rows.append([_e(name), _e(_f3(s.get("precision"))), _e(_f3(s.get("recall"))),
                     f'{_bar(s.get("f1"))}<b>{_e(_f3(s.get("f1")))}</b>', _e(fmt(s.get("support")))])
    support = sum(s.get("support", 0) for s in per_type.values() if _num(s.get("support")))
    if all(_num(m.get(k)) for k in ("precision", "recall", "f1")):
        rows.append(["<b>overall</b>", _e(_f3(m["precision"])), _e(_f3(m["recall"])),
                     f'{_bar(m["f1"])}<b>{_e(_f3(m["f1"]))}</b>', _e(fmt(support))])
    return _table(["type", "precision", "recall", "f1", "support"], rows, "num per-type")


def _input_cell(inp) -> str:
    """A sample's input: a text, or an object such as {"question", "context"}."""
    if isinstance(inp, dict):
        return "".join(f'<div class="text"><b>{_e(k)}</b>: {_e(v)}</div>' for k, v in inp.items())
    return f'<div class="text">{_e(inp)}</div>'


def _output_cell(out) -> str:
    """A sample's output: a row of `nlpfit predict` (entities, fill-mask candidates, completions, a
    generated text, an answer), a text, a list of texts, or a list of candidates with scores."""
    if isinstance(out, dict):
        if isinstance(out.get("entities"), list):
            chips = [f'<span class="chip">{_e(e.get("word", ""))} · {_e(e.get("entity_group", ""))}'
                     + (f' {_e(fmt(e["score"]))}' if _num(e.get("score")) else "") + "</span>"
                     for e in out["entities"] if isinstance(e, dict)]
            return "".join(chips) or '<span class="muted">(no entity)</span>'
        if isinstance(out.get("predictions"), list):
            out = out["predictions"]
            if out and isinstance(out[0], list):  # several masks: the candidates of the first
                out = out[0]
        elif isinstance(out.get("completions"), list):
            out = out["completions"]
        elif "answer" in out:
            score = f' <span class="score">{_e(fmt(out["score"]))}</span>' if _num(out.get("score")) else ""
            return f'<div class="text">{_answer(out["answer"])}{score}</div>'
        else:
            texts = [v for k, v in out.items() if k.endswith("_text") and isinstance(v, str)]
            if texts:
                return f'<div class="text">{_e(texts[0])}</div>'
    if isinstance(out, list):
        items = []
        for o in out:
            if isinstance(o, dict):
                text = o.get("token_str", o.get("token", o.get("sequence", o.get("text", o.get("generated_text", "")))))
                score = f' <span class="score">{_e(fmt(o["score"]))}</span>' if _num(o.get("score")) else ""
                items.append(f"<li>{_e(text)}{score}</li>")
            else:
                items.append(f"<li>{_e(o)}</li>")
        return f'<ol class="cands">{"".join(items)}</ol>'
    if isinstance(out, dict):
        return f"<code>{_e(json.dumps(out, ensure_ascii=False))}</code>"
    return f'<div class="text">{_e(out)}</div>'


def _seq2seq_samples(rows: list) -> str:
    body = []
    for r in rows[:SAMPLE_ROWS]:
        if not isinstance(r, dict):
            continue
        ref = r.get("reference")
        ref = " | ".join(map(str, ref)) if isinstance(ref, list) else ref
        body.append([f'<div class="text">{_e(r.get("source", ""))}</div>',
                     f'<div class="text">{_e(ref if ref is not None else "")}</div>',
                     f'<div class="text pred">{_e(r.get("prediction", ""))}</div>'])
    return _table(["source", "reference", "prediction"], body, "samples")


def _qa_samples(preds) -> str:
    if isinstance(preds, dict):
        items = list(preds.items())
    else:
        items = [(r.get("id", i), r) for i, r in enumerate(preds) if isinstance(r, dict)]
    items = items[:SAMPLE_ROWS]
    with_refs = any(isinstance(v, dict) for _, v in items)
    rows = []
    for qid, v in items:
        if isinstance(v, dict):
            pred = v.get("prediction", v.get("prediction_text", ""))
            refs = v.get("references", v.get("reference", []))
            refs = " | ".join(map(str, refs)) if isinstance(refs, list) else str(refs)
        else:
            pred, refs = v, ""
        cells = [f"<code>{_e(qid)}</code>", _answer(pred)]
        rows.append(cells + [_e(refs)] if with_refs else cells)
    header = ["question id", "predicted answer"] + (["reference answers"] if with_refs else [])
    return _table(header, rows, "samples")


def _answer(text) -> str:
    return _e(text) if str(text) else '<span class="muted">(no answer)</span>'


# ---- the page ----------------------------------------------------------------------------------------
CSS = """
:root{--fg:#111827;--muted:#6b7280;--line:#e5e7eb;--bg:#f6f7f9;--card:#fff;--accent:#2563eb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
 font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif}
header{background:linear-gradient(120deg,#1e3a8a,#2563eb 60%,#0ea5e9);color:#fff;padding:28px 0 26px}
.wrap{max-width:1120px;margin:0 auto;padding:0 28px}
header .kicker{text-transform:uppercase;letter-spacing:.08em;font-size:12px;opacity:.85}
header h1{margin:4px 0 6px;font-size:28px;font-weight:650;word-break:break-all}
header .sub{opacity:.92;font-size:14px}
header .sub code{background:rgba(255,255,255,.16);color:#fff}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-top:18px}
.card{background:rgba(255,255,255,.13);border:1px solid rgba(255,255,255,.25);border-radius:10px;
 padding:10px 16px;min-width:150px}
.card .k{font-size:12px;opacity:.85}
.card .v{font-size:24px;font-weight:650;font-variant-numeric:tabular-nums}
.card.main{background:#fff;color:var(--fg)}
.card.main .k{color:var(--muted);opacity:1}
.card.main .v{color:var(--accent);font-size:30px}
main{padding:8px 0 40px}
section{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:18px 22px;margin:18px 0}
h2{font-size:18px;margin:0 0 12px;font-weight:650}
h3{font-size:15px;margin:16px 0 8px;color:#374151}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:8px 28px;align-items:start}
.grid.two{grid-template-columns:repeat(2,minmax(0,1fr))}
@media (max-width:860px){.grid.two{grid-template-columns:minmax(0,1fr)}}
svg.plot{width:100%;height:auto;display:block}
.fig{max-width:760px}
.fig.square{max-width:520px}
table.narrow{max-width:560px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
thead th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);font-weight:600;
 border-bottom:2px solid var(--line)}
tbody tr:nth-child(even){background:#fafafb}
table.num td:not(:first-child),table.num th:not(:first-child){text-align:right;font-variant-numeric:tabular-nums}
table.kv th{width:40%;font-weight:500;color:#374151;white-space:nowrap}
table.kv.wide{table-layout:fixed}
table.kv.wide th{width:15.5%;color:var(--muted);white-space:normal;overflow-wrap:anywhere}
table.kv.wide td{width:17.8%;padding-right:16px;overflow-wrap:anywhere}
.chip{display:inline-block;background:#eef2ff;color:#3730a3;border-radius:5px;padding:0 6px;margin:1px 4px 1px 0;
 font-size:12.5px;max-width:100%;overflow-wrap:anywhere}
table.per-type td{white-space:nowrap}
table.kv td{font-variant-numeric:tabular-nums;word-break:break-word}
table.per-type tr:last-child td{border-top:2px solid var(--line)}
table.samples td{width:33%}
.bar{display:inline-block;width:70px;height:8px;background:#e5e7eb;border-radius:4px;margin-right:8px;
 vertical-align:middle;overflow:hidden}
.bar span{display:block;height:100%;background:var(--accent)}
.text{white-space:pre-wrap;word-break:break-word}
.pred{color:#1e40af}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;background:#f3f4f6;
 padding:1px 5px;border-radius:4px;word-break:break-all}
.muted{color:var(--muted)}
.caption{color:var(--muted);font-size:13px;margin:6px 0 0}
.note{color:#92400e;background:#fffbeb;border:1px solid #fde68a;border-radius:8px;padding:8px 12px;
 font-size:13.5px;margin:10px 0}
ol.cands{margin:0;padding-left:20px}
.score{color:var(--muted);font-size:12px;font-variant-numeric:tabular-nums}
footer{color:var(--muted);font-size:12.5px;text-align:center;padding:0 0 30px}
"""


def _samples_section(out: Path, run: dict, samples: Callable | None, notes: list[str]) -> str:
    parts = []
    seq = _optional(out / "predictions.jsonl", notes)
    if isinstance(seq, list) and seq:
        n = min(len(seq), SAMPLE_ROWS)
        parts.append(f'<p class="muted">The first {n} of {len(seq):,} predictions of the last evaluation '
                     "(predictions.jsonl).</p>" + _seq2seq_samples(seq))
    qa = _optional(out / "predictions.json", notes)
    if isinstance(qa, (dict, list)) and qa:
        n = min(len(qa), SAMPLE_ROWS)
        parts.append(f'<p class="muted">The first {n} of {len(qa):,} answers of the last evaluation '
                     "(predictions.json).</p>" + _qa_samples(qa))
    rows = samples(out) if samples is not None else _optional(out / "samples.json", notes)
    if isinstance(rows, list) and rows:
        kind = {"clm": "Generations", "mlm": "Fill-mask candidates (top k)"}.get(run.get("task"), "Samples")
        body = [[_input_cell(r.get("input", "")), _output_cell(r.get("output", ""))]
                for r in rows if isinstance(r, dict)]
        parts.append(f"<h3>{_e(kind)}</h3>" + _table(["input", "output"], body, "samples"))
    if not parts:
        return ""
    return _section("Sample predictions", "".join(parts), "samples")


def _timing(run: dict, metrics: dict) -> list[tuple[str, str]]:
    train = metrics.get("train") or {}
    log = [r for r in metrics.get("log") or [] if isinstance(r, dict)]
    items = [("started", _e(str(run.get("started", "")).replace("T", "\u00a0"))),
             ("whole run (load, train, evaluate, save)", _e(_duration(run.get("runtime_s")))),
             ("training (evaluations excluded)", _e(_duration(train.get("runtime_s"))))]
    for key, label in (("steps", "optimizer steps"), ("epochs", "epochs"),
                       ("samples_per_second", "training examples / s"), ("tokens_per_second", "training tokens / s"),
                       ("num_processes", "processes")):
        if _num(train.get(key)):
            items.append((label, _e(fmt_rate(train[key]) if key.endswith("per_second") else fmt(train[key]))))
    tps = sorted(r["tokens_per_second"] for r in log if _finite(r.get("tokens_per_second")))
    if tps:
        items.append(("tokens / s per logging step (median)", _e(fmt_rate(tps[len(tps) // 2]))))
    items.append(("device", _e(run.get("device", ""))))
    return [(k, v) for k, v in items if v]


def _history_table(metrics: dict) -> str:
    history = [h for h in metrics.get("history") or [] if isinstance(h, dict)]
    if not history:
        return ""
    keys: list[str] = []
    for h in history:
        keys += [k for k, v in (h.get("eval") or {}).items() if _num(v) and k not in keys]
    rows = [[_e(fmt_epoch(h.get("epoch"))), _e(fmt(h.get("step"))), _e(fmt(h.get("train_loss")))]
            + [_e(fmt((h.get("eval") or {}).get(k))) for k in keys] for h in history]
    return _table(["epoch", "step", "train loss"] + [_e(k) for k in keys], rows, "num")


def _metrics_table(metrics: dict) -> str:
    splits = [(name, _scalars(metrics.get(key))) for name, key in (("validation", "eval"), ("test", "test"))]
    splits = [(n, m) for n, m in splits if m]
    if not splits:
        return ""
    keys: list[str] = []
    for _, m in splits:
        keys += [k for k in m if k not in keys]
    rows = [[_e(k)] + [_e(fmt(m.get(k))) for _, m in splits] for k in keys]
    return _table(["metric"] + [_e(n) for n, _ in splits], rows, "num")


def render(out_dir, run: dict, metrics: dict, samples: Callable | None = None) -> str:
    """The report page of a run folder as one HTML string."""
    out = Path(out_dir)
    notes: list[str] = []
    task = str(run.get("task", ""))
    cfg = run.get("config") if isinstance(run.get("config"), dict) else {}
    key = main_metric(task, metrics)
    test, val = _scalars(metrics.get("test")), _scalars(metrics.get("eval"))
    lower = key in LOWER_IS_BETTER

    # header: what was trained, and how well
    cards = []
    if key:
        split, value = ("test", test.get(key)) if key in test else ("validation", val.get(key))
        if value is not None:
            cards.append(("main", f"{split} {key}" + (" (lower is better)" if lower else ""), fmt(value)))
        if split == "test" and key in val:
            cards.append(("", f"validation {key}", fmt(val[key])))
    train = metrics.get("train") or {}
    if _finite(train.get("loss")):
        cards.append(("", "final training loss", fmt(train["loss"])))
    if _num(train.get("runtime_s")):
        cards.append(("", "training time", _duration(train["runtime_s"])))
    if _num(train.get("tokens_per_second")):
        cards.append(("", "training tokens / s", fmt_rate(train["tokens_per_second"])))
    card_html = "".join(f'<div class="card {c}"><div class="k">{_e(k)}</div><div class="v">{_e(v)}</div></div>'
                        for c, k, v in cards)
    data = cfg.get("data") or []
    data = ", ".join(map(str, data)) if isinstance(data, list) else str(data)
    # the folder's name; while train writes OUT aside (.OUT.nlpfit-tmp/final), the name OUT will have
    here = out.resolve()
    title = Path(str(cfg["output"])).name if here.parent.name.endswith(".nlpfit-tmp") and cfg.get("output") \
        else here.name
    header = (f'<header><div class="wrap"><div class="kicker">nlpfit run report &middot; {_e(task)}'
              f' &middot; {_e(run.get("pipeline", ""))}</div><h1>{_e(title)}</h1>'
              f'<div class="sub">model <code>{_e(cfg.get("model", "?"))}</code> &nbsp;&middot;&nbsp; '
              f'data <code>{_e(data or "?")}</code> &nbsp;&middot;&nbsp; '
              f'{_e(str(run.get("started", "")).replace("T", " "))}</div>'
              f'<div class="cards">{card_html}</div></div></header>')

    sections = []
    # curves: the loss (and learning rate) beside the main metric
    loss_svg, loss_note = loss_plot(metrics)
    left = "<h3>Loss" + (" and learning rate" if "learning rate" in (loss_svg or "") else "") + "</h3>"
    left += (f'<div class="fig">{loss_svg}</div>' if loss_svg else "") + (_caption(loss_note) if loss_note else "")
    right = ""
    if key:
        svg = metric_plot(metrics, key)
        right = f"<h3>Validation {_e(key)} at each evaluation</h3>" + (
            f'<div class="fig">{svg}</div>' if svg else
            _caption(f"No evaluation during training recorded {key} (metrics.json \"history\")."))
    grad = grad_norm_plot(metrics)
    if grad:
        left += f'<h3>Gradient norm</h3><div class="fig">{grad}</div>'
    body = f'<div class="grid two"><div>{left}</div><div>{right}</div></div>'
    sections.append(_section("Training", body, "training"))

    # evaluations
    body = ("<h3>Every evaluation</h3>" + _history_table(metrics)) if metrics.get("history") else ""
    table = _metrics_table(metrics)
    body += ("<h3>Final metrics</h3>" + table.replace('class="num"', 'class="num narrow"', 1)) if table else ""
    if body:
        sections.append(_section("Evaluation", body, "evaluation"))

    # token classification: per type, confusion
    scored = next(((n, metrics[k]) for n, k in (("test", "test"), ("validation", "eval"))
                   if isinstance(metrics.get(k), dict) and isinstance(metrics[k].get("per_type"), dict)
                   and metrics[k]["per_type"]), None)
    if scored:
        name, m = scored
        kinds = {"pos": "tags", "chunk": "chunk types"}.get(task, "entity types")
        table = f"<h3>Scores on the {name} split</h3>" + _per_type_table(m)
        conf = _optional(out / "confusion.json", notes)
        if conf is not None and not _valid_confusion(conf):
            notes.append("confusion.json is not {\"labels\": [...], \"matrix\": [[...]]} with a square matrix "
                         "of counts; it is left out.")
            conf = None
        if conf:
            body = (f'<div class="grid two"><div>{table}</div><div><h3>Confusion of {kinds}</h3>'
                    f'<div class="fig square">{confusion_plot(conf)}</div>'
                    + _caption("Tokens per reference type (rows) and predicted type (columns); the colour is "
                               "the share of the row.") + "</div></div>")
        else:
            body = table + _note(f"No confusion matrix: this run saved no confusion.json (reference against "
                                 f"predicted {kinds[:-1]} per token).")
        sections.append(_section(f"Per {kinds[:-1]}", body, "per-type"))

    samples_html = _samples_section(out, run, samples, notes)
    if samples_html:
        sections.append(samples_html)

    # configuration, versions, timing
    config_items = [(k, _value(v)) for k, v in cfg.items() if k != "task_options"]
    task_items = [(k, _value(v)) for k, v in (cfg.get("task_options") or {}).items()]
    body = "<h3>Run</h3>" + _kv_table(config_items, "kv wide config", per_row=3) + '<div class="grid two"><div>'
    if task_items:
        body += f"<h3>Task options ({_e(task)})</h3>" + _kv_table(task_items, "kv task-options")
    body += "</div><div>"
    task_data = run.get("task_data") if isinstance(run.get("task_data"), dict) else {}
    if task_data:
        body += "<h3>Task data</h3>" + _kv_table([(k, _value(v)) for k, v in task_data.items()])
    body += "</div></div>"
    sections.append(_section("Configuration", body, "configuration"))

    versions = run.get("versions") if isinstance(run.get("versions"), dict) else {}
    command = run.get("command")
    if isinstance(command, list):
        command = " ".join(["nlpfit"] + [str(c) for c in command[1:]])
    body = '<div class="grid two"><div><h3>Timing</h3>' + _kv_table(_timing(run, metrics)) + "</div><div>"
    if versions:
        body += "<h3>Versions</h3>" + _kv_table([(k, _e(v)) for k, v in versions.items()])
    body += "</div></div>"
    if command:
        body += f"<h3>Command</h3><code>{_e(command)}</code>"
    sections.append(_section("Versions and timing", body, "versions"))

    if notes:
        sections.insert(0, _section("Notes", "".join(_note(n) for n in notes), "notes"))
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{_e(title)} &middot; nlpfit report</title>'
            f"<style>{CSS}</style></head><body>{header}<main><div class=\"wrap\">{''.join(sections)}</div></main>"
            f"<footer>written by nlpfit {_e(versions.get('nlpfit', ''))} from run.json and metrics.json"
            "</footer></body></html>\n")


def write_report(out_dir, samples: Callable[[Path], list[dict]] | None = None) -> Path:
    """Write OUT/report.html for the run folder OUT and return its path.  `samples`, if given, is
    called with OUT and returns the rows of samples.json (`{"input", "output"}`), e.g. by running the
    model; without it OUT/samples.json is shown when present."""
    run, metrics = load_run_files(out_dir)
    path = Path(out_dir) / "report.html"
    path.write_text(render(out_dir, run, metrics, samples), encoding="utf-8")
    return path
