"""The `nlpfit` command line.  Options are generated from the configuration dataclasses
(`config.RunConfig` and each task's `Options`), so flags, defaults and help are written once."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click

from nlpfit import NlpfitError, __version__
from nlpfit.config import RunConfig, cli_fields

_TYPES = {"int": int, "float": float, "bool": bool}


def _option(f: dataclasses.Field, default=dataclasses.MISSING) -> click.Option:
    meta = f.metadata
    default = f.default if default is dataclasses.MISSING else default
    if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    flag = meta.get("flag") or "--" + f.name.replace("_", "-")
    ann = str(f.type).replace(" ", "")
    kind = _TYPES.get(ann.split("|")[0], str)
    if kind is bool:
        return click.Option([f"{flag}/--no-{flag[2:]}", f.name], default=default, show_default=True, help=meta["help"])
    if meta.get("choices"):
        kind = click.Choice(meta["choices"])
    if meta.get("multiple"):
        return click.Option([flag, f.name], multiple=True, type=kind, help=meta["help"])
    return click.Option([flag, f.name], type=kind, default=default, show_default=default is not None, help=meta["help"])


def _train_command(name: str) -> click.Command:
    from nlpfit.tasks import task_class, task_help, task_presets

    task_cls = task_class(name)
    presets = task_presets(name)
    common = cli_fields(RunConfig)
    common_names = {f.name for f in common}
    task_fields = [f for f in dataclasses.fields(task_cls.Options) if f.name not in common_names]
    params = [_option(f, task_cls.defaults.get(f.name, dataclasses.MISSING)) for f in common]
    params += [_option(f, presets.get(f.name, dataclasses.MISSING)) for f in task_fields]

    def callback(**kwargs):
        from nlpfit.run import train

        cfg = RunConfig(**{k: v for k, v in kwargs.items() if k in common_names})
        cfg.data = list(cfg.data)
        cfg.task = name
        cfg.task_options = {f.name: kwargs[f.name] for f in task_fields}
        result = train(cfg)
        metrics = result["metrics"]
        split = "test" if metrics.get("test") else "validation"
        _print_metrics(result["task"], metrics.get("test") or metrics["eval"], title=f"{split} split")

    module_doc = (sys.modules[task_cls.__module__].__doc__ or "").strip()
    # "\b" keeps click from re-wrapping the module's numbered walk-through
    doc = task_help(name) + "".join(f"\n\n\b\n{para}" for para in module_doc.split("\n\n") if para)
    return click.Command(name, params=params, callback=callback, help=doc, short_help=task_help(name))


class TrainGroup(click.Group):
    """`nlpfit train TASK`: one sub-command per registered task, built on demand."""

    def list_commands(self, ctx):
        from nlpfit.tasks import REGISTRY

        return list(REGISTRY)

    def get_command(self, ctx, name):
        from nlpfit.tasks import REGISTRY

        return _train_command(name) if name in REGISTRY else None


def _print_metrics(task, metrics: dict, title: str | None = None) -> None:
    if not metrics:
        return
    if title:
        click.echo(f"== {title} ==")
    table = task.metrics_table(metrics)
    if table:
        click.echo(table)
    flat = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
    click.echo("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in flat.items()))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nlpfit")
def cli():
    """Fine-tune, evaluate and use transformer models for the main NLP tasks.

    \b
    nlpfit train ner --data conll2003 --model bert-base-cased --output OUT
    nlpfit evaluate OUT --data conll2003 --split test
    nlpfit predict OUT "My name is Sylvain and I work at Hugging Face in Brooklyn."
    nlpfit serve OUT --port 8000
    """


cli.add_command(TrainGroup("train", help="Train a model for one task (see `nlpfit train TASK --help`)."))


@cli.command()
@click.argument("model_dir")
@click.option("--data", multiple=True, help="Data to evaluate on (default: the data the model was trained on).")
@click.option("--split", default="test", show_default=True, help="Split to evaluate.")
@click.option("--batch-size", type=int, default=None, help="Evaluation batch size.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(model_dir, data, split, batch_size, as_json):
    """Evaluate a trained model folder on a split of some data."""
    from nlpfit.run import evaluate as run_evaluate

    result = run_evaluate(model_dir, list(data), split, batch_size)
    if as_json:
        click.echo(json.dumps(result["metrics"], indent=2))
    else:
        _print_metrics(result["task"], result["metrics"], title=f"{split} split")


def _predict_options() -> list[click.Option]:
    """The union of every task's prediction options."""
    from nlpfit.tasks import REGISTRY, task_class

    seen: dict[str, click.Option] = {}
    for name in REGISTRY:
        for f in dataclasses.fields(task_class(name).PredictOptions):
            if f.name not in seen:
                opt = _option(f, None)
                seen[f.name] = opt
    return list(seen.values())


def _read_inputs(texts, input_file) -> list:
    items = list(texts)
    if input_file:
        from nlpfit.data import json_object, read_lines

        path = Path(input_file)
        if not path.is_file():
            raise NlpfitError(f"--input {input_file}: no such file")
        for i, line in enumerate(read_lines(path), 1):
            if not line.strip():
                continue
            if path.suffix.lower() in (".jsonl", ".json") or line.lstrip().startswith("{"):
                obj = json_object(line, input_file, i)
                items.append(obj.get("text", obj) if set(obj) <= {"text", "id"} else obj)
            else:
                items.append(line)
    return items


def _prediction_values(task_options: dict, batch_size: int | None) -> dict:
    """The prediction option values of `predict` / `serve` (run.predict_options reads them)."""
    values = {k: v for k, v in task_options.items() if k != "_task_options_added"}
    if batch_size:
        values["batch_size"] = batch_size
    return values


class PredictCommand(click.Command):
    def get_params(self, ctx):
        if not any(p.name == "_task_options_added" for p in self.params):
            self.params.extend(_predict_options())
            self.params.append(click.Option(["--_task-options-added"], hidden=True, is_flag=True))
        return super().get_params(ctx)


@cli.command(cls=PredictCommand)
@click.argument("model_dir")
@click.argument("texts", nargs=-1)
@click.option("--input", "input_file", help="File of inputs: a text per line, or JSON Lines with a text field.")
@click.option("--batch-size", type=int, default=None, help="Inference batch size.")
def predict(model_dir, texts, input_file, batch_size, **task_options):
    """Run a trained model on texts; print JSON Lines."""
    from nlpfit.run import predict as run_predict

    inputs = _read_inputs(texts, input_file)
    for row in run_predict(model_dir, inputs, _prediction_values(task_options, batch_size)):
        click.echo(json.dumps(row, ensure_ascii=False))


@cli.command(cls=PredictCommand)
@click.argument("model_dir")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=int, default=8000, show_default=True, help="Port to listen on (0: any free port).")
@click.option("--batch-size", type=int, default=None, help="Inference batch size; a larger request is served in "
              "chunks of this size, in turn with the other requests.")
@click.option("--max-wait-ms", type=float, default=5.0, show_default=True,
              help="Dynamic batching: how long the oldest request waits for others to join its batch (0: off).")
@click.option("--max-batch-inputs", type=int, default=256, show_default=True,
              help="Dynamic batching: the most inputs one batch gathers from several requests.")
@click.option("--max-request-inputs", type=int, default=1024, show_default=True,
              help="The most inputs one request may hold (413 beyond).")
@click.option("--api-key", envvar="NLPFIT_API_KEY", show_envvar=True, default=None,
              help="Require `Authorization: Bearer KEY` on POST /predict.")
@click.option("--access-log/--no-access-log", default=True, show_default=True, help="One line per request on stderr.")
def serve(model_dir, host, port, batch_size, max_wait_ms, max_batch_inputs, max_request_inputs, api_key, access_log,
          **task_options):
    """Serve a trained model over HTTP (FastAPI on uvicorn), loaded once.

    \b
    POST /predict {"inputs": [...], "options": {...}} -> {"predictions": [...]}
         (the rows of `nlpfit predict`)
    POST /predict/stream  one input of clm, translation or summarization:
         server-sent events {"token": ...} ..., then {"done": true, "row": {...}}
    GET  /  the playground;  /docs  the API (/openapi.json);  /health, /info, /examples, /metrics

    The prediction options given here are the defaults a request's "options" can override.
    Requests that arrive together with the same options run as one batch. Client mistakes get a
    4xx status and {"error": "one line"}."""
    from nlpfit.serve import serve as run_serve

    if max_wait_ms < 0 or max_batch_inputs < 1 or max_request_inputs < 1:
        raise NlpfitError("--max-wait-ms must be >= 0, --max-batch-inputs and --max-request-inputs >= 1")
    run_serve(model_dir, host, port, _prediction_values(task_options, batch_size), max_wait_ms=max_wait_ms,
              max_batch_inputs=max_batch_inputs, max_request_inputs=max_request_inputs, api_key=api_key,
              access_log=access_log)


@cli.command("tasks")
def list_tasks():
    """List the tasks nlpfit trains."""
    from nlpfit.tasks import REGISTRY, task_class

    for name in REGISTRY:
        cls = task_class(name)
        click.echo(f"{name:14s} {cls.pipeline}")


from nlpfit.tokenizer_train import tokenizer_group  # noqa: E402  (light: heavy imports are inside its functions)

cli.add_command(tokenizer_group)

from nlpfit.baseline import baseline_group  # noqa: E402  (light: its commands are built when used)

cli.add_command(baseline_group(_option))


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="nlpfit", standalone_mode=False)
    except NlpfitError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
