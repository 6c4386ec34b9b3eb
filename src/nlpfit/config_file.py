"""Config files: one YAML file holds a run's options, so a recipe is a file a user keeps.

    task: ner
    data: [data/train.conll]
    model: bert-base-cased
    lr: 2e-4
    batch-size: 32          # a key is a flag's name, with `-` or `_`
    label_all_subtokens: false

`nlpfit train --config run.yaml` (or `nlpfit train ner --config run.yaml`) reads it; flags given on
the command line override the file, and `nlpfit.train(config="run.yaml", lr=1e-4)` does the same
from Python.  Every value is checked before anything runs, and a problem names the file, the line
and the key: `run.yaml:4: lr -1.0: must be above 0`, `run.yaml:6: unknown key 'batchsize' (did you
mean batch_size?)`.  A `sweep:` section is read by `nlpfit sweep` (the trials and the search space)
and left alone by `nlpfit train`, so one file drives a run and its search.

Every OUT holds `config.yaml`, the resolved configuration of its run (the offline defaults of
--model and --data filled in): `nlpfit train --config OUT/config.yaml --output OUT2` trains the
same run again.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nlpfit import NlpfitError
from nlpfit.config import RunConfig, cli_fields, kind_of

#: options about how a command treats OUT rather than what the run is: not saved in OUT/config.yaml
NOT_SAVED = ("overwrite", "resume")
#: sections of a config file that other commands read (`nlpfit train` leaves them alone)
SECTIONS = ("sweep",)

_NULL = "tag:yaml.org,2002:null"


@dataclass(frozen=True)
class Entry:
    """One key of a config file: its value as YAML read it, its node (for the text written), its line."""

    key: str
    value: Any
    node: Any
    line: int


@dataclass(frozen=True)
class ConfigFile:
    """A parsed config file: its top-level keys (names with `-` written as `_`), in file order."""

    path: str
    entries: dict = field(default_factory=dict)

    @property
    def task(self) -> str | None:
        entry = self.entries.get("task")
        if entry is None:
            return None
        if not isinstance(entry.value, str):
            raise NlpfitError(f"{self.path}:{entry.line}: task: expected a task name (e.g. task: ner)")
        return entry.value

    def task_for(self, given: str | None, command: str = "nlpfit train") -> str:
        """The task of a run from this file: the file's `task:`, or the TASK of the command line,
        which must agree with it."""
        task = self.task
        if given and task and given != task:
            raise NlpfitError(f"{self.path}:{self.entries['task'].line}: task: {task}, but the command is "
                              f"`{command} {given}` (drop TASK, or change the file's task)")
        if not (given or task):
            raise NlpfitError(f"{self.path}: no `task:` key: write e.g. `task: ner` in it, or name the task: "
                              f"{command} TASK --config {self.path}")
        from nlpfit.tasks import task_class

        chosen = given or task
        try:
            task_class(chosen)
        except NlpfitError as exc:
            line = self.entries["task"].line if "task" in self.entries else None
            raise NlpfitError(f"{self.path}:{line}: task: {exc}" if line else str(exc)) from None
        return chosen

    def section(self, name: str) -> "ConfigFile":
        """A mapping section of the file (e.g. `sweep:`) as a ConfigFile of its own keys."""
        entry = self.entries.get(name)
        if entry is None:
            return ConfigFile(self.path)
        import yaml

        if not isinstance(entry.node, yaml.MappingNode):
            raise NlpfitError(f"{self.path}:{entry.line}: {name}: expected a mapping of options")
        return ConfigFile(self.path, _entries(self.path, entry.node))

    def values(self, fields: list[dataclasses.Field], skip: tuple = ("task", *SECTIONS),
               command: str = "nlpfit train") -> tuple[dict, dict]:
        """(values, lines) of the options in `fields` that the file sets, each value typed as its
        field declares (`1e-5` is a number, `no` a text for a text option); an unknown key is an error."""
        known = {f.name: f for f in fields}
        values, lines = {}, {}
        for name, entry in self.entries.items():
            if name in skip:
                continue
            f = known.get(name)
            if f is None:
                close = difflib.get_close_matches(name, list(known), n=1)
                hint = f"did you mean {close[0]}?" if close else f"`{command} --help` lists the options"
                raise NlpfitError(f"{self.path}:{entry.line}: unknown key {entry.key!r} ({hint})")
            values[name] = typed(f, entry)
            lines[name] = entry.line
        return values, lines


def read(path: str, label: str | None = None) -> ConfigFile:
    """Parse a YAML config file; a file that is missing, not YAML, or not a mapping is one error line
    (`label`: how the user named the file, default `--config PATH`)."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise NlpfitError(f"{label or '--config ' + str(path)}: no such file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise NlpfitError(f"{path}: not UTF-8 (byte 0x{exc.object[exc.start]:02x})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise NlpfitError(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if node is None:
        raise NlpfitError(f"{path}: empty file (expected option names and values, e.g. `task: ner`)")
    if not isinstance(node, yaml.MappingNode):
        raise NlpfitError(f"{path}:{node.start_mark.line + 1}: expected a mapping of option names to values "
                          "(e.g. `lr: 2e-4`)")
    return ConfigFile(path, _entries(path, node))


def _entries(path: str, node) -> dict[str, Entry]:
    import yaml

    constructor = yaml.constructor.SafeConstructor()
    entries: dict[str, Entry] = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            raise NlpfitError(f"{path}:{line}: a key must be an option name")
        key = key_node.value
        name = key.strip().lstrip("-").replace("-", "_")
        if name in entries:
            raise NlpfitError(f"{path}:{line}: {key} is given twice (also on line {entries[name].line})")
        try:
            value = constructor.construct_object(value_node, deep=True)
        except yaml.YAMLError as exc:
            raise NlpfitError(f"{path}:{line}: {key}: {getattr(exc, 'problem', None) or exc}") from None
        entries[name] = Entry(key, value, value_node, line)
    return entries


def typed(f: dataclasses.Field, entry: Entry) -> Any:
    """The value of a config-file key as the option's type: text options take the text as written
    (`source_lang: no` is "no", not false), number options the number (`lr: 1e-5`, which YAML
    reads as text); anything else is left for the checker to report."""
    import yaml

    node, value, kind = entry.node, entry.value, kind_of(f)
    if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
        return [] if kind == "list" else None
    if kind == "str" and isinstance(node, yaml.ScalarNode):
        return node.value
    if kind == "float":
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
    if kind == "list":
        if isinstance(node, yaml.ScalarNode):
            return [node.value]
        if isinstance(node, yaml.MappingNode):  # {NAME: VALUE} is the repeatable flag's NAME=VALUE items
            items = []
            for key, item in node.value:
                text = _text(item)
                if not isinstance(key, yaml.ScalarNode) or text is None:
                    return value
                items.append(f"{key.value}={text}")
            return items
        if isinstance(node, yaml.SequenceNode):
            return [item.value if isinstance(item, yaml.ScalarNode) else item_value
                    for item, item_value in zip(node.value, value)]
    return value


def _text(node) -> str | None:
    """The text of a scalar as written, or of a list of scalars joined by commas (None: neither)."""
    import yaml

    if isinstance(node, yaml.ScalarNode):
        return node.value
    if isinstance(node, yaml.SequenceNode) and all(isinstance(x, yaml.ScalarNode) for x in node.value):
        return ",".join(x.value for x in node.value)
    return None


def as_dict(cfg: RunConfig, skip: tuple = ()) -> dict:
    """The options of a configuration as config-file keys and plain values: `task`, the shared
    options (less NOT_SAVED), the task's options."""
    values: dict = {"task": cfg.task}
    for f in cli_fields(RunConfig):
        if f.name not in NOT_SAVED:
            values[f.name] = _plain(getattr(cfg, f.name))
    options = cfg.task_options
    if dataclasses.is_dataclass(options):
        values.update({f.name: _plain(getattr(options, f.name)) for f in dataclasses.fields(options)})
    else:
        values.update({k: _plain(v) for k, v in dict(options or {}).items()})
    return {k: v for k, v in values.items() if k not in skip}


def dump(cfg: RunConfig, sections: dict | None = None, skip: tuple = ()) -> str:
    """The YAML text of a resolved configuration (less the keys in `skip`, plus extra sections
    such as `sweep:`)."""
    import yaml

    values = {**as_dict(cfg, skip), **(sections or {})}
    head = ("# nlpfit configuration: `nlpfit train --config THIS_FILE --output NEW` trains this run again;\n"
            "# keys are the flags of `nlpfit train " + cfg.task + "` (see --help); flags given override the file.\n")
    return head + yaml.safe_dump(values, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ---- a task's train options ---------------------------------------------------------------------
def train_fields(task: str) -> list[dataclasses.Field]:
    """The options of `nlpfit train TASK`: the shared ones, then the task's own."""
    from nlpfit.tasks import task_class

    common = cli_fields(RunConfig)
    names = {f.name for f in common}
    return common + [f for f in dataclasses.fields(task_class(task).Options) if f.name not in names]


def run_config(task: str, values: dict) -> RunConfig:
    """The RunConfig of `nlpfit train TASK` with these option values (the task's defaults and
    presets where a value is not given); task options are held as a dict until the run types them."""
    from nlpfit.tasks import task_class

    common_names = {f.name for f in cli_fields(RunConfig)}
    cls = task_class(task)
    # repeatable options arrive from click as tuples: lists, as run.json stores them
    common = {**cls.defaults, **{k: list(v) if isinstance(v, tuple) else v for k, v in values.items()
                                 if k in common_names}}
    if isinstance(common.get("data"), (str, Path)):
        common["data"] = [common["data"]]
    common["data"] = [str(d) for d in common.get("data") or []]
    task_options = {k: v for k, v in values.items() if k not in common_names}
    return RunConfig(**common, task=task, task_options=task_options)


def unknown_option(name: str, known: list[str], where: str) -> NlpfitError:
    """The error for an option name that `where` does not take, with the closest known name."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return NlpfitError(f"{where}: unknown option {name!r} ({hint}options: {', '.join(known)})")
