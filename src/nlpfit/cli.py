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

        # repeatable options arrive as tuples: lists, as run.json stores them
        common_values = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items() if k in common_names}
        cfg = RunConfig(**common_values, task=name,
                        task_options={f.name: kwargs[f.name] for f in task_fields})
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

    inputs = _read_inputs(texts, input_file)
    for row in run_predict(model_dir, inputs, _prediction_values(task_options)):
        click.echo(json.dumps(row, ensure_ascii=False))


@cli.command(cls=PredictCommand)
@click.argument("model_dir")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=int, default=8000, show_default=True, help="Port to listen on (0: any free port).")
@click.option("--max-wait-ms", type=float, default=5.0, show_default=True,
              help="Dynamic batching: how long the oldest request waits for others to join its batch (0: off).")
@click.option("--max-batch-inputs", type=int, default=256, show_default=True,
              help="Dynamic batching: the most inputs one batch gathers from several requests.")
def serve(model_dir, host, port, max_wait_ms, max_batch_inputs, **task_options):
    """Serve a trained model over HTTP, loaded once: POST /predict {"inputs": [...], "options": {...}}
    returns {"predictions": [...]} (the rows of `nlpfit predict`); GET /health, GET /info.
    The prediction options given here are the defaults a request's "options" can override.
    Requests that arrive together with the same options run as one batch."""
    from nlpfit.serve import serve as run_serve

    if max_wait_ms < 0 or max_batch_inputs < 1:
        raise NlpfitError("--max-wait-ms must be >= 0 and --max-batch-inputs >= 1")
    run_serve(model_dir, host, port, _prediction_values(task_options), max_wait_ms=max_wait_ms,
              max_batch_inputs=max_batch_inputs)


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


@tokenizer_group.command("train")
@click.option("--data", multiple=True, help="Folder of source files, JSON Lines/Parquet/CSV file, or hub dataset id "
              "(repeat to concatenate; default: the Python standard library and installed packages).")
@click.option("--data-config", default=None, help="Configuration name of a hub dataset.")
@click.option("--vocab-size", type=int, default=52000, show_default=True, help="Vocabulary size.")
@click.option("--output", required=True, help="Tokenizer folder to write.")
@click.option("--from", "base", default=None,
              help="Existing fast tokenizer (hub id or folder) whose pipeline is kept (train_new_from_iterator); "
                   "default: a byte-level BPE from scratch.")
@click.option("--glob", default="**/*.py", show_default=True, help="Files to read in a --data folder.")
@click.option("--text-column", default="content", show_default=True, help="Text column of table / hub data.")
@click.option("--filter-keywords", default=None,
              help="Keep only files mentioning one of these comma-separated words (default data: "
                   "pandas,sklearn,matplotlib,seaborn; '' keeps all).")
@click.option("--min-frequency", type=int, default=2, show_default=True, help="Minimum pair count for a merge.")
@click.option("--max-files", type=int, default=0, show_default=True, help="Train on at most N files (0: all).")
@click.option("--validation-split", type=float, default=None,
              help="Share of files held out for the report, routed as `nlpfit train clm` does "
                   "[default: 0.05 with the default data, as train clm; else 0.1].")
@click.option("--split-seed", type=int, default=42, show_default=True, help="Seed of the hold-out routing.")
@click.option("--compare-files", type=int, default=500, show_default=True,
              help="Held-out files on which tokens per file are compared.")
@click.option("--overwrite", is_flag=True, help="Replace --output if it exists.")
def train_command(data, data_config, vocab_size, output, base, glob, text_column, filter_keywords, min_frequency,
                  max_files, validation_split, split_seed, compare_files, overwrite):
    """Train a byte-level BPE tokenizer on a corpus and report tokens per file before/after.

    \b
    nlpfit tokenizer train --data code/ --vocab-size 52000 --output tok
    nlpfit tokenizer train --data code.jsonl --text-column content --from gpt2 --output tok
    """
    from nlpfit.tokenizer_training import report_table, train_tokenizer_folder

    facts = train_tokenizer_folder(list(data), vocab_size, output, base, glob=glob, text_column=text_column,
                                    data_config=data_config, filter_keywords=filter_keywords,
                                    min_frequency=min_frequency, max_files=max_files,
                                    validation_split=validation_split, split_seed=split_seed,
                                    compare_files=compare_files, overwrite=overwrite)
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


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="nlpfit", standalone_mode=False)
    except NlpfitError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # an unknown option, a value outside its choices: one line
        click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
