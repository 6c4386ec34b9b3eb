"""The `nlpfit` command line.  Options are generated from the configuration dataclasses
(`config.RunConfig`, each task's `Options` and `PredictOptions`, and the option dataclasses of
evaluate, serve, tokenizer train and sweep), so flags, defaults, ranges and help are written once;
every value is checked by `config.check` before anything loads.  Bad input, click's usage errors
included, is one `error:` line and exit status 2."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from nlpfit import NlpfitError, __version__
from nlpfit.config import RunConfig, Where, check, cli_fields, describe_range, kind_of

_TYPES = {"int": int, "float": float, "bool": bool}
#: where a value given on the command line comes from (not a default, not the config file)
_GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def _option(f: dataclasses.Field, default=dataclasses.MISSING, help: str | None = None) -> click.Option:
    meta = f.metadata
    default = f.default if default is dataclasses.MISSING else default
    if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    flag = meta.get("flag") or "--" + f.name.replace("_", "-")
    kind = _TYPES.get(kind_of(f), str)
    help = help or meta["help"]
    if kind in (int, float) and describe_range(f) != "any number":
        help += f" [{describe_range(f)}]"
    if kind is bool:
        return click.Option([f"{flag}/--no-{flag[2:]}", f.name], default=default, show_default=True, help=help)
    if meta.get("choices"):
        kind = click.Choice(meta["choices"])
    if meta.get("multiple"):
        return click.Option([flag, f.name], multiple=True, type=kind, help=help)
    if meta.get("required"):
        return click.Option([flag, f.name], type=kind, required=True, help=help)
    return click.Option([flag, f.name], type=kind, default=default, show_default=default is not None, help=help)


def _given(ctx: click.Context, names) -> set[str]:
    """The options among `names` that the command line gave (not defaults)."""
    return {n for n in names if ctx.get_parameter_source(n) in _GIVEN}


def _values(cls, kwargs: dict) -> dict:
    """The values of dataclass `cls`'s fields among click's keyword arguments (tuples as lists)."""
    return {f.name: list(kwargs[f.name]) if isinstance(kwargs[f.name], tuple) else kwargs[f.name]
            for f in dataclasses.fields(cls) if f.name in kwargs}


_CONFIG_HELP = ("YAML file of options (keys: the flag names, task options included; `task:` names the task); "
                "flags given here override it. Every OUT holds one: OUT/config.yaml.")
_SWEEP_HELP = {"resume": "Continue an interrupted sweep in OUT: finished trials are kept, interrupted ones rerun.",
               "overwrite": "Replace the sweep folder OUT if it already exists.",
               "output": "Sweep folder: trials/NNN (one model each), best/, sweep.db, sweep.csv, report.html.",
               "push_to_hub": "Upload OUT/best to the Hugging Face Hub at the end (the trials are not uploaded).",
               "hub_model_id": "Hub repository for --push-to-hub (default: the OUT folder name)."}


def _task_command(name: str, sweep: bool = False) -> click.Command:
    """`nlpfit train NAME` (or `nlpfit sweep NAME`): the shared options, the task's own, --config."""
    from nlpfit.config_file import read, run_config, train_fields
    from nlpfit.tasks import task_class, task_help, task_presets

    task_cls = task_class(name)
    presets = task_presets(name)
    fields = train_fields(name)
    common_names = {f.name for f in cli_fields(RunConfig)}
    params = [_option(f, (task_cls.defaults if f.name in common_names else presets).get(f.name, dataclasses.MISSING),
                      help=_SWEEP_HELP.get(f.name) if sweep else None) for f in fields]
    sweep_fields = []
    if sweep:
        from nlpfit.sweep import SweepOptions

        sweep_fields = list(dataclasses.fields(SweepOptions))
        params += [_option(f) for f in sweep_fields]
    params.append(click.Option(["--config", "config_file"], default=None, metavar="FILE", help=_CONFIG_HELP))
    command = f"nlpfit {'sweep' if sweep else 'train'}"

    def callback(config_file, **kwargs):
        ctx = click.get_current_context()
        given = _given(ctx, kwargs)
        values = {f.name: list(kwargs[f.name]) if isinstance(kwargs[f.name], tuple) else kwargs[f.name]
                  for f in fields}
        sweep_values = {f.name: list(kwargs[f.name]) if isinstance(kwargs[f.name], tuple) else kwargs[f.name]
                        for f in sweep_fields}
        where = Where(given=frozenset(given))
        from_file: set[str] = set()
        if config_file:
            cf = read(config_file)
            cf.task_for(name, command)
            file_values, lines = cf.values(fields, command=f"{command} {name}")
            if sweep:
                sweep_file, sweep_lines = cf.section("sweep").values(sweep_fields, skip=(),
                                                                     command=f"{command} {name}")
                sweep_values.update({k: v for k, v in sweep_file.items() if k not in given})
                lines = {**lines, **sweep_lines}
            values.update({k: v for k, v in file_values.items() if k not in given})
            from_file = set(lines)
            where = Where(file=config_file, lines=lines, given=frozenset(given))
        cfg = run_config(name, values)
        if sweep:
            from nlpfit.sweep import SweepOptions, run_sweep

            sopts = SweepOptions(**sweep_values)
            summary = run_sweep(cfg, sopts, where=where, fixed=(given | from_file) - set(sweep_values))
            click.echo(summary["table"])
            if summary.get("best"):
                click.echo(summary["best"])
            return
        from nlpfit.run import train

        result = train(cfg, where=where)
        metrics = result["metrics"]
        split = "test" if metrics.get("test") else "validation"
        _print_metrics(result["task"], metrics.get("test") or metrics["eval"], title=f"{split} split")

    if sweep:
        doc = (f"Search the hyperparameters of `nlpfit train {name}` with Optuna: --trials runs, each a model in "
               "OUT/trials/NNN, the best copied to OUT/best. " + task_help(name))
        return click.Command(name, params=params, callback=callback, help=doc, short_help=task_help(name))
    module_doc = (sys.modules[task_cls.__module__].__doc__ or "").strip()
    # "\b" keeps click from re-wrapping the module's numbered walk-through
    doc = task_help(name) + "".join(f"\n\n\b\n{para}" for para in module_doc.split("\n\n") if para)
    return click.Command(name, params=params, callback=callback, help=doc, short_help=task_help(name))


def _config_value(args: list[str]) -> str | None:
    """The FILE of `--config FILE` (or `--config=FILE`) among command-line arguments."""
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


class TaskGroup(click.Group):
    """`nlpfit train TASK` / `nlpfit sweep TASK`: one sub-command per registered task, built on
    demand; without TASK, `--config FILE` names the task with its `task:` key."""

    sweep = False

    def list_commands(self, ctx):
        from nlpfit.tasks import REGISTRY

        return list(REGISTRY)

    def get_command(self, ctx, name):
        from nlpfit.tasks import REGISTRY

        return _task_command(name, self.sweep) if name in REGISTRY else None

    def parse_args(self, ctx, args):
        from nlpfit.tasks import REGISTRY, task_class

        if args and args[0] not in REGISTRY and not set(args) & set(ctx.help_option_names):
            path = _config_value(args)
            if path is not None:
                from nlpfit.config_file import read

                args = [read(path).task_for(None, f"nlpfit {self.name}"), *args]
            elif args[0].startswith("-"):
                raise NlpfitError(f"nlpfit {self.name}: name the task first (nlpfit {self.name} TASK [options]; "
                                  f"tasks: {', '.join(REGISTRY)}), or give --config FILE")
            else:
                task_class(args[0])  # the error names the tasks
        return super().parse_args(ctx, args)


class TrainGroup(TaskGroup):
    """`nlpfit train TASK`."""


class SweepGroup(TaskGroup):
    """`nlpfit sweep TASK`."""

    sweep = True


def _print_metrics(task, metrics: dict, title: str | None = None) -> None:
    if not metrics:
        return
    if title:
        click.echo(f"== {title} ==")
    table = task.metrics_table(metrics)
    if table:
        click.echo(table)
    from nlpfit.metrics import summary

    flat = summary(metrics)
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


cli.add_command(TrainGroup("train", help="Train a model for one task (see `nlpfit train TASK --help`); "
                                         "`nlpfit train --config run.yaml` takes the task from the file."))
cli.add_command(SweepGroup("sweep", help="Search hyperparameters with Optuna (see `nlpfit sweep TASK --help`): "
                                         "trials in OUT/trials, the best in OUT/best, a table and report.html."))


def _evaluate_options(fn):
    from nlpfit.config import EvaluateOptions

    for f in reversed(dataclasses.fields(EvaluateOptions)):
        fn.__click_params__ = [*getattr(fn, "__click_params__", []), _option(f)]
    return fn


@cli.command()
@click.argument("model_dir")
@_evaluate_options
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(model_dir, data, split, batch_size, precision, as_json):
    """Evaluate a trained model folder on a split of some data."""
    from nlpfit.run import evaluate as run_evaluate

    result = run_evaluate(model_dir, list(data), split, batch_size, precision)
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
        if path.is_dir():
            raise NlpfitError(f"--input {input_file}: is a folder, not a file of inputs")
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


def _prediction_values(task_options: dict) -> dict:
    """The prediction option values of `predict` / `serve` (run.predict_options reads them)."""
    return {k: v for k, v in task_options.items() if k != "_task_options_added"}


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
def predict(model_dir, texts, input_file, **task_options):
    """Run a trained model on texts; print JSON Lines."""
    from nlpfit.run import predict as run_predict

    if not texts and not input_file and task_options.get("question") is None and task_options.get("context") is None:
        raise NlpfitError("nothing to predict: give texts, --input FILE (a text per line or JSON Lines), or for "
                          "question answering --question and --context")
    inputs = _read_inputs(texts, input_file)
    for row in run_predict(model_dir, inputs, _prediction_values(task_options)):
        click.echo(json.dumps(row, ensure_ascii=False))


def _serve_options(fn):
    from nlpfit.config import ServeOptions

    for f in reversed(dataclasses.fields(ServeOptions)):
        fn.__click_params__ = [*getattr(fn, "__click_params__", []), _option(f)]
    return fn


@cli.command(cls=PredictCommand)
@click.argument("model_dir")
@_serve_options
def serve(model_dir, host, port, max_wait_ms, max_batch_inputs, max_request_inputs, api_key, access_log,
          **task_options):
    """Serve a trained model over HTTP (FastAPI on uvicorn), loaded once.

    \b
    POST /predict {"inputs": [...], "options": {...}} -> {"predictions": [...]}
         (the rows of `nlpfit predict`)
    POST /predict/stream  one input of clm, translation or summarization:
         server-sent events {"token": ...} ..., then {"done": true, "row": {...}}
    GET  /  the playground;  /docs  the API (/openapi.json);  /health, /info, /examples, /metrics

    The prediction options given here are the defaults a request's "options" can override;
    --batch-size is also the chunk in which a large request is served, in turn with the others.
    Requests that arrive together with the same options run as one batch. Client mistakes get a
    4xx status and {"error": "one line"}."""
    import os

    from nlpfit.config import ServeOptions
    from nlpfit.serve import serve as run_serve

    api_key = api_key or os.environ.get("NLPFIT_API_KEY") or None
    check(ServeOptions(host=host, port=port, max_wait_ms=max_wait_ms, max_batch_inputs=max_batch_inputs,
                       max_request_inputs=max_request_inputs, api_key=api_key, access_log=access_log))
    run_serve(model_dir, host, port, _prediction_values(task_options), max_wait_ms=max_wait_ms,
              max_batch_inputs=max_batch_inputs, max_request_inputs=max_request_inputs, api_key=api_key,
              access_log=access_log)


@cli.command()
@click.argument("model_dir")
def report(model_dir):
    """Write MODEL_DIR/report.html: one self-contained page of the run (curves, metrics, samples, configuration)."""
    from nlpfit.report.html import write_report

    click.echo(write_report(model_dir))


@cli.command("tasks")
def list_tasks():
    """List the tasks nlpfit trains."""
    from nlpfit.tasks import REGISTRY, task_class

    for name in REGISTRY:
        cls = task_class(name)
        click.echo(f"{name:14s} {cls.pipeline}")


@cli.command("datasets")
def list_datasets():
    """List the course's datasets that --data resolves: name, task, source, splits."""
    from nlpfit.data.catalog import table

    click.echo(table())


# ---- nlpfit tokenizer -------------------------------------------------------------------------------
@click.group("tokenizer")
def tokenizer_group():
    """Train tokenizers."""


def _tokenizer_options(fn):
    from nlpfit.config import TokenizerTrainOptions

    for f in reversed(dataclasses.fields(TokenizerTrainOptions)):
        fn.__click_params__ = [*getattr(fn, "__click_params__", []), _option(f)]
    return fn


@tokenizer_group.command("train")
@_tokenizer_options
def train_command(**kwargs):
    """Train a byte-level BPE tokenizer on a corpus and report tokens per file before/after.

    \b
    nlpfit tokenizer train --data code/ --vocab-size 52000 --output tok
    nlpfit tokenizer train --data code.jsonl --text-column content --from gpt2 --output tok
    """
    from nlpfit.config import TokenizerTrainOptions
    from nlpfit.tokenizer_training import report_table, train_tokenizer_folder

    o = TokenizerTrainOptions(**_values(TokenizerTrainOptions, kwargs))
    check(o)
    facts = train_tokenizer_folder(o.data, o.vocab_size, o.output, o.base, glob=o.glob, text_column=o.text_column,
                                    data_config=o.data_config, filter_keywords=o.filter_keywords,
                                    min_frequency=o.min_frequency, max_files=o.max_files,
                                    validation_split=o.validation_split, split_seed=o.split_seed,
                                    compare_files=o.compare_files, overwrite=o.overwrite)
    click.echo(report_table(facts["tokens_per_file"]))


cli.add_command(tokenizer_group)


# ---- nlpfit baseline --------------------------------------------------------------------------------
def _lead3_command() -> click.Command:
    from nlpfit.baseline import DATA_FIELDS, TASK_FIELDS
    from nlpfit.tasks import task_class

    common = [f for f in cli_fields(RunConfig) if f.name in DATA_FIELDS]
    task = [f for f in dataclasses.fields(task_class("summarization").Options) if f.name in TASK_FIELDS]
    params = [_option(f) for f in common + task]
    params += [click.Option(["--split"], default="validation", show_default=True, help="Split to score."),
               click.Option(["--json", "as_json"], is_flag=True, help="Print the scores as JSON.")]

    def callback(split, as_json, **kwargs):
        from nlpfit.baseline import lead3

        values = {f.name: kwargs[f.name] for f in common}
        cfg = RunConfig(**{**values, "data": list(values["data"])}, task="summarization",
                        task_options={f.name: kwargs[f.name] for f in task})
        check(cfg)
        scores = lead3(cfg, split)
        if as_json:
            click.echo(json.dumps(scores, indent=2))
        else:
            click.echo("  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items()))

    return click.Command("lead3", params=params, callback=callback,
                         help="ROUGE-1/2/L/Lsum of the first three sentences of each text (pysbd sentences) "
                              "against its reference summary, on one split of --data.",
                         short_help="ROUGE of the lead-3 summarization baseline.")


class BaselineGroup(click.Group):
    """`nlpfit baseline`; its commands are built when used, so `nlpfit --help` stays fast."""

    def list_commands(self, ctx):
        return ["lead3"]

    def get_command(self, ctx, name):
        return _lead3_command() if name == "lead3" else None


cli.add_command(BaselineGroup("baseline", help="Scores of simple baselines (see `nlpfit baseline lead3 --help`)."))


def usage_error(exc: click.ClickException) -> str:
    """Click's usage error as one line: `--batch-size: 'abc' is not a valid integer (see 'nlpfit train ner --help')`."""
    ctx = getattr(exc, "ctx", None)
    param = getattr(exc, "param", None)
    if isinstance(exc, click.MissingParameter):  # (a BadParameter too)
        kind = exc.param_type or (param.param_type_name if param is not None else "parameter")
        name = param.human_readable_name if param is not None else ""
        if isinstance(param, click.Option):
            name = "/".join(param.opts)
        message = f"missing {kind} {name}".strip()
    elif isinstance(exc, click.BadParameter) and param is not None:
        name = "/".join(param.opts) if isinstance(param, click.Option) else param.human_readable_name
        message = f"{name}: {exc.message}"
    else:
        message = exc.format_message()
    message = " ".join(message.split()).rstrip(".")
    message = message[:1].lower() + message[1:] if message[:2] != "--" else message
    if ctx is not None and ctx.command_path:
        message += f" (see '{ctx.command_path} --help')"
    return message


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="nlpfit", standalone_mode=False)
    except NlpfitError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:  # `nlpfit` or `nlpfit train` alone: the help
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {usage_error(exc)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
