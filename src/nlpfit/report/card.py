"""The model card (OUT/README.md): task, data, hyperparameters and metrics, with Hub metadata."""

from __future__ import annotations

import dataclasses


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def model_card(task, cfg, metrics: dict, task_data: dict, custom_pipeline: bool = False) -> str:
    """The card of a run: `task_data` is what the task's `card_data` returned."""
    from nlpfit.models import SCRATCH

    name = cfg.out.name
    base_model = cfg.model
    from nlpfit.metrics import summary

    eval_m, test_m = summary(metrics.get("eval") or {}), summary(metrics.get("test") or {})
    meta = ["---", "library_name: transformers", f"pipeline_tag: {task.pipeline}", "tags:", "- nlpfit",
            f"- {cfg.task}"]
    if cfg.data and not any(s.startswith(("/", ".")) for s in cfg.data):
        meta += ["datasets:"] + [f"- {d}" for d in cfg.data]
    if base_model and not base_model.startswith("/") and base_model != SCRATCH:
        meta.append(f"base_model: {base_model}")
    meta.append("---")
    lines = meta + ["", f"# {name}", "",
                    f"A {task.pipeline} model trained with nlpfit (`nlpfit train {cfg.task}`), "
                    + ("built from its configuration (random initialisation)." if base_model == SCRATCH
                       else f"starting from `{base_model}`."), "",
                    "## Data", "", "- " + "\n- ".join(cfg.data), ""]
    extra = task_data
    if extra.get("labels"):
        lines += [f"Labels ({len(extra['labels'])}): " + ", ".join(f"`{l}`" for l in extra["labels"]), ""]
    lines += ["## Training", "", "| hyperparameter | value |", "|---|---|"]
    for key in ("engine", "epochs", "max_steps", "batch_size", "grad_accum", "lr", "weight_decay", "warmup_ratio",
                "scheduler", "seed", "mixed_precision", "group_by_length"):
        lines.append(f"| {key} | {_fmt(getattr(cfg, key))} |")
    for key, value in dataclasses.asdict(cfg.task_options).items():
        lines.append(f"| {key} | {_fmt(value)} |")
    for title, m in (("Validation", eval_m), ("Test", test_m)):
        if m:
            lines += ["", f"## {title} metrics", "", "| metric | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in m.items()]
    table = task.metrics_table(metrics.get("test") or metrics.get("eval") or {})
    if table:
        lines += ["", "```", table, "```"]
    call = {"question-answering": 'pipe(question="...", context="...")'}.get(task.pipeline, 'pipe("...")')
    lines += ["", "## Use", "", "```python", "import nlpfit", "", f'pipe = nlpfit.pipeline("{name}")', call, "```", "",
              "`nlpfit.pipeline` builds a transformers Pipeline with nothing but installed code "
              "(`trust_remote_code=False`)."]
    if custom_pipeline:
        lines += ["With transformers alone, the pipeline class shipped in this folder can be loaded, which runs "
                  "that file's code:", "", "```python", "from transformers import pipeline", "",
                  f'pipe = pipeline("{task.pipeline}", model="{name}", trust_remote_code=True)', "```"]
    else:
        lines += ["With transformers alone:", "", "```python", "from transformers import pipeline", "",
                  f'pipe = pipeline("{task.pipeline}", model="{name}")', "```"]
    lines += ["", f"or `nlpfit predict {name} ...`; `run.json` holds the full configuration and `metrics.json` "
              "the metrics per epoch.", ""]
    return "\n".join(lines)
