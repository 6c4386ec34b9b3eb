"""`nlpfit baseline lead3`: ROUGE of the first three sentences of each text (the summarization
baseline of the course).  Its flags are the data flags of `nlpfit train summarization`."""

from __future__ import annotations

import dataclasses
import json

import click

#: RunConfig fields that say which data to read
DATA_FIELDS = ("data", "data_config", "validation_split", "test_split", "split_seed", "max_eval_samples")
#: Summarization options that say how to read it
TASK_FIELDS = ("text_column", "summary_column", "filter", "min_words", "dedupe", "sentence_language")


def _lead3_command(make_option) -> click.Command:
    from nlpfit.config import RunConfig, cli_fields
    from nlpfit.tasks.seq2seq import SummarizationOptions

    common = [f for f in cli_fields(RunConfig) if f.name in DATA_FIELDS]
    task = [f for f in dataclasses.fields(SummarizationOptions) if f.name in TASK_FIELDS]
    params = [make_option(f) for f in common + task]
    params += [click.Option(["--split"], default="validation", show_default=True, help="Split to score."),
               click.Option(["--json", "as_json"], is_flag=True, help="Print the scores as JSON.")]

    def callback(split, as_json, **kwargs):
        from nlpfit.tasks.seq2seq import lead3

        cfg = RunConfig(**{f.name: kwargs[f.name] for f in common})
        cfg.data = list(cfg.data)
        cfg.task = "summarization"
        cfg.task_options = {f.name: kwargs[f.name] for f in task}
        if not cfg.data:
            from nlpfit.tasks.seq2seq import Summarization

            cfg.data = Summarization(cfg).default_data()
        scores = lead3(cfg, split)
        if as_json:
            click.echo(json.dumps(scores, indent=2))
        else:
            click.echo("  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items()))

    return click.Command("lead3", params=params, callback=callback,
                         help="ROUGE-1/2/L/Lsum of the first three sentences of each text (pysbd sentences) "
                              "against its reference summary, on one split of --data.",
                         short_help="ROUGE of the lead-3 summarization baseline.")


def baseline_group(make_option) -> click.Group:
    """`nlpfit baseline`; its commands are built when used, so `nlpfit --help` stays fast."""

    class BaselineGroup(click.Group):
        def list_commands(self, ctx):
            return ["lead3"]

        def get_command(self, ctx, name):
            return _lead3_command(make_option) if name == "lead3" else None

    return BaselineGroup("baseline", help="Scores of simple baselines (see `nlpfit baseline lead3 --help`).")
