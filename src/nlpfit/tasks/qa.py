"""Extractive question answering (SQuAD), as in the course's chapter on question answering.

1. Read questions with their context and answers {text, answer_start}: a hub dataset (squad,
   squad_v2), a nested SQuAD JSON file (v1.1 or v2.0) or a flat JSON Lines/CSV file.  Every
   answer_start must point at its text (or --fix-answer-starts searches for it).
2. Tokenize question first, context second, truncating only the context: a long context becomes
   several windows of --max-length tokens that overlap by --stride tokens, each with its offset
   mapping back to characters of the context.
   Training features label the start and end token of the answer inside the window, or the CLS
   token when the answer is not (entirely) in that window or the question has none (SQuAD 2.0).
   Evaluation features keep the example id and offsets of the context tokens only (None elsewhere).
3. Post-processing: for each example, over all its windows, the --n-best best start and end
   logits form candidate spans inside the context with end >= start and at most
   --max-answer-length tokens; the best start+end score wins, its text cut from the original
   context by the offsets.  With unanswerable questions (SQuAD 2.0) the answer is empty when the
   null (CLS) score beats the best span by more than --null-threshold.
4. Exact match and F1 with the official SQuAD normalisation (torchmetrics' implementation of the
   official script), the maximum over the gold answers; HasAns/NoAns splits when some questions
   have no answer.  OUT/predictions.json maps every evaluated id to its predicted answer.
5. Predict with the same windows and post-processing: answer, score (start x end probability),
   start and end characters in the context.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nlpfit import NlpfitError
from nlpfit.config import opt
from nlpfit.log import info, warn
from nlpfit.models import MINILM, load_model, load_tokenizer, resolve_model
from nlpfit.pipelines import question_answering as qa_pipeline
from nlpfit.pipelines.question_answering import (Windows, best_answers, choose_answers, cls_position,
                                                  window_features, windows)
from nlpfit.tasks import base
from nlpfit.tasks.base import Evaluation, Task

PIPELINE_FILE = "qa_pipeline.py"  # copied into OUT so that transformers.pipeline can load it

TABLE_SUFFIXES = {".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".parquet"}


@dataclass(frozen=True)
class Options:
    max_length: int = opt(384, "Tokens per window (question + context + special tokens; 0: the model's maximum).",
                          min=0)
    stride: int = opt(128, "Tokens of context shared by consecutive windows of a long context.", min=0)
    n_best: int = opt(20, "Start and end candidates per window considered by the post-processing.", min=1)
    max_answer_length: int = opt(30, "Longest answer, in tokens.", min=1)
    null_threshold: float = opt(0.0, "SQuAD 2.0: answer nothing when the null score beats the best span by more.")
    null_answers: str = opt("auto", "Allow empty answers (SQuAD 2.0); auto: when some training question has none.",
                            choices=("auto", "yes", "no"))
    fix_answer_starts: bool = opt(False, "Move a wrong answer_start to the occurrence of the answer text nearest it.")


@dataclass(frozen=True)
class PredictOptions(base.PredictOptions):
    question: str | None = opt(None, "Question answering: the question (with --context).")
    context: str | None = opt(None, "Question answering: the context that holds the answer (with --question).")


@dataclass(frozen=True)
class Facts(base.Facts):
    #: whether the model may answer nothing (SQuAD 2.0: some training questions have no answer)
    null_answers: bool = False


# ---- 2. features --------------------------------------------------------------------------------
def _window_error(exc: Exception, max_length: int, stride: int) -> NlpfitError:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return NlpfitError(f"--max-length {max_length} / --stride {stride}: cannot cut windows ({msg}); "
                       "a question leaves too little room: raise --max-length or lower --stride")


def tokenize_windows(tokenizer, questions: list[str], contexts: list[str], max_length: int, stride: int):
    """Question first, context second; only the context is truncated, overflowing windows kept."""
    try:
        return windows(tokenizer, questions, contexts, max_length, stride)
    except Exception as exc:  # the question alone does not leave room for the stride
        raise _window_error(exc, max_length, stride) from None


def context_span(sequence_ids: list) -> tuple[int, int]:
    """First and last token index of the context (sequence 1) in a window."""
    start = sequence_ids.index(1)
    end = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
    return start, end


def answer_positions(offsets: list, sequence_ids: list, answer_start: int, answer_end: int, cls: int) -> tuple[int, int]:
    """Token start/end of the character span [answer_start, answer_end) in one window, or (cls, cls)
    when the window does not hold the whole answer."""
    ctx_start, ctx_end = context_span(sequence_ids)
    if offsets[ctx_start][0] > answer_start or offsets[ctx_end][1] < answer_end:
        return cls, cls
    i = ctx_start
    while i <= ctx_end and offsets[i][0] <= answer_start:
        i += 1
    j = ctx_end
    while j >= ctx_start and offsets[j][1] >= answer_end:
        j -= 1
    return i - 1, j + 1


def train_features(batch, tokenizer, max_length: int, stride: int) -> dict:
    enc = tokenize_windows(tokenizer, batch["question"], batch["context"], max_length, stride)
    sample_map = enc.pop("overflow_to_sample_mapping")
    offsets_all = enc.pop("offset_mapping")
    starts, ends = [], []
    for i, offsets in enumerate(offsets_all):
        cls = cls_position(enc["input_ids"][i], tokenizer)
        answers = batch["answers"][sample_map[i]]
        if not answers["text"]:
            starts.append(cls), ends.append(cls)
            continue
        a_start = answers["answer_start"][0]
        s, e = answer_positions(offsets, enc.sequence_ids(i), a_start, a_start + len(answers["text"][0]), cls)
        starts.append(s), ends.append(e)
    enc["start_positions"], enc["end_positions"] = starts, ends
    return enc


def eval_features(batch, tokenizer, max_length: int, stride: int) -> dict:
    """Windows with their example id, CLS index and offsets of the context tokens (None elsewhere)."""
    try:
        return window_features(batch, tokenizer, max_length, stride)
    except Exception as exc:
        raise _window_error(exc, max_length, stride) from None


def arrow_columns(ds, names: list[str]):
    """Those columns of a Dataset as one pyarrow Table in the Dataset's row order (after select /
    shuffle: through its index mapping), without a Python object per row."""
    table = ds.data.table.select(names)
    if ds._indices is not None:
        table = table.take(ds._indices.column(0))
    return table


class ArrowWindows(Windows):
    """`Windows` whose character offsets stay in Arrow's flat buffers (`bounds`: each window's first
    token; `token_values`: each token's first value in `values`, [start, end] for context tokens):
    they are looked up only for the chosen tokens; `char_start` / `char_end` are built on demand."""

    def __init__(self, example_id, lengths, context, cls, bounds, token_values, values):
        import numpy as np

        self.example_id, self.lengths, self.context = example_id, lengths, context
        self.cls = np.asarray(cls, dtype=np.int64)
        self.bounds, self.token_values, self.values = bounds, token_values, values

    def chars(self, rows, positions):
        import numpy as np

        if not len(self.values):  # no context token anywhere
            return np.zeros(len(rows), dtype=np.int64), np.zeros(len(rows), dtype=np.int64)
        at = self.token_values[self.bounds[rows] + positions]
        inside = self.context[rows, positions]
        return (np.where(inside, self.values.take(at, mode="clip"), 0),
                np.where(inside, self.values.take(at + 1, mode="clip"), 0))

    def _dense(self, which: int):
        import numpy as np

        rows, pos = np.nonzero(self.context)
        out = np.zeros(self.context.shape, dtype=np.int64)
        out[rows, pos] = self.chars(rows, pos)[which]
        return out

    char_start = property(lambda self: self._dense(0))
    char_end = property(lambda self: self._dense(1))


def dataset_windows(features) -> Windows:
    """The post-processing's `Windows` of a features Dataset (example_id, offset_mapping with None
    outside the context, cls_index: 0 when absent), read from its Arrow columns as flat buffers
    (the list offsets and values), without a Python object per token."""
    import numpy as np

    names = [c for c in ("example_id", "offset_mapping", "cls_index") if c in features.column_names]
    table = arrow_columns(features, names)
    outer = table.column("offset_mapping").combine_chunks()
    n_win = len(outer)
    bounds = outer.offsets.to_numpy().astype(np.int64)
    lengths = np.diff(bounds)
    width = int(lengths.max(initial=0))
    inner = outer.values  # one [start, end] list per token, null outside the context
    valid = inner.is_valid().to_numpy(zero_copy_only=False)[bounds[0]:bounds[-1]]
    context = np.zeros((n_win, width), dtype=bool)
    context[np.arange(width)[None, :] < lengths[:, None]] = valid  # row by row, as the tokens lie
    cls = table.column("cls_index").to_numpy() if "cls_index" in names else np.zeros(n_win, dtype=np.int64)
    return ArrowWindows(table.column("example_id"), lengths, context, cls, bounds[:-1],
                        inner.offsets.to_numpy(), inner.values.to_numpy(zero_copy_only=False))


def example_groups(example_ids, window_ids):
    """(the position of each window's example among `example_ids`, -1 when absent; the first
    position of each example's id), both int64 arrays, from Arrow arrays of ids."""
    import numpy as np
    import pyarrow.compute as pc

    window_ids = window_ids.cast(example_ids.type)

    def positions(values):
        return pc.fill_null(pc.index_in(values, value_set=example_ids), -1).to_numpy().astype(np.int64)

    return positions(window_ids), positions(example_ids)


class QuestionAnswering(Task):
    name = "question-answering"
    pipeline = "question-answering"
    Options = Options
    PredictOptions = PredictOptions
    Facts = Facts
    defaults = {"lr": 5e-5, "epochs": 2.0, "batch_size": 16, "warmup_ratio": 0.1}
    default_split = (0.1, 0.1)
    main_metric = "f1"
    max_batch_padding = 0.25
    greater_is_better = True
    search_space = {"lr": "1e-5:3e-4:log", "batch_size": "8,16,32", "warmup_ratio": "0:0.2", "weight_decay": "0:0.1",
                    "epochs": "1,2,3"}

    # ---- 1. data ----------------------------------------------------------------------------
    def default_data(self) -> list[str]:
        from nlpfit.data.squad import PYDOC

        return [PYDOC]

    def default_model(self) -> str:
        return MINILM

    def load_data(self, trained: Facts | None = None):
        import datasets

        from nlpfit.data import load_splits
        from nlpfit.data.squad import PYDOC, check_answers, check_ids, normalise, python_docs_squad, read_file
        from nlpfit.data.squad import features as squad_features

        cfg, o = self.cfg, self.opts
        where = f"--data {', '.join(cfg.data)}"
        if o.stride < 0 or 0 < o.max_length <= o.stride:
            raise NlpfitError(f"--stride {o.stride}: must be at least 0 and less than --max-length {o.max_length}")
        if o.n_best < 1 or o.max_answer_length < 1:
            raise NlpfitError("--n-best and --max-answer-length must be at least 1")
        if cfg.data == [PYDOC]:
            raw = python_docs_squad(cfg.validation_split, cfg.test_split)
        else:
            if PYDOC in cfg.data:
                raise NlpfitError(f"--data {PYDOC}: the demo set cannot be combined with other data")
            raw = load_splits(cfg.data, read_file, config=cfg.data_config, validation=cfg.validation_split,
                              test=cfg.test_split, seed=cfg.split_seed)
        out = datasets.DatasetDict()
        for split, ds in raw.items():
            if ds.features != squad_features():
                ds = normalise(ds, f"{where} ({split})")  # hub datasets: same columns, other types
            check_ids(ds, f"{where} ({split})")
            out[split] = check_answers(ds, f"{where} ({split})", fix=o.fix_answer_starts)
        if "train" not in out and trained is None:
            raise NlpfitError(f"{where}: no train split")
        if trained is not None:
            null_answers = trained.null_answers
        elif o.null_answers == "auto":
            null_answers = any(not a["text"] for a in out["train"]["answers"])
        else:
            null_answers = o.null_answers == "yes"
        no_answer = {s: sum(not a["text"] for a in d["answers"]) for s, d in out.items()}
        if not null_answers and any(no_answer.values()):
            if "train" in out and no_answer.get("train"):
                warn(f"{no_answer['train']} training questions have no answer but --null-answers no: "
                     "they are trained to point at CLS, yet the model never answers nothing")
        info("data: " + ", ".join(f"{s} {len(d)} questions" + (f" ({no_answer[s]} without answer)" if no_answer[s]
                                                                  else "") for s, d in out.items())
             + ("; null answers allowed (SQuAD 2.0)" if null_answers else ""))
        return out, Facts(null_answers=null_answers)

    def trained_facts(self, out_dir: str) -> Facts:
        """Whether the trained model answers nothing (run.json's task_data)."""
        run = Path(out_dir) / "run.json"
        if run.is_file():
            return Facts(null_answers=bool(json.loads(run.read_text()).get("task_data", {}).get("null_answers", False)))
        return Facts(null_answers=self.opts.null_answers == "yes")

    # ---- 2. model and features --------------------------------------------------------------
    def build(self, raw, facts):
        from transformers import AutoModelForQuestionAnswering

        path = resolve_model(self.cfg.model)
        tokenizer = self._tokenizer(path)
        model = load_model(AutoModelForQuestionAnswering, path, "question-answering")
        # transformers.pipeline("question-answering", model=OUT, trust_remote_code=True) runs the same
        # windows and post-processing, with this run's settings (see nlpfit/pipelines/question_answering.py)
        o = self.opts
        model.config.qa_settings = {"max_length": self.max_length(tokenizer), "stride": o.stride, "n_best": o.n_best,
                                    "max_answer_length": o.max_answer_length, "null_answers": facts.null_answers,
                                    "null_threshold": o.null_threshold}
        model.config.custom_pipelines = {self.pipeline: {
            "impl": PIPELINE_FILE.removesuffix(".py") + ".ExtractiveQuestionAnsweringPipeline",
            "pt": ["AutoModelForQuestionAnswering"], "tf": [], "type": "text"}}
        return model, tokenizer

    def load_trained(self, out_dir: str):
        from transformers import AutoModelForQuestionAnswering

        return (load_model(AutoModelForQuestionAnswering, out_dir, "question-answering", option=None),
                self._tokenizer(out_dir, option=None))

    def _tokenizer(self, path: str, option: str | None = "--model"):
        tokenizer = load_tokenizer(path, option=option)
        if not tokenizer.is_fast:
            raise NlpfitError(f"{f'{option} ' if option else ''}{path}: question answering needs a fast tokenizer "
                              "(offset mapping)")
        return tokenizer

    def max_length(self, tokenizer) -> int:
        o = self.opts
        limit = min(tokenizer.model_max_length or 512, 512)
        length = min(o.max_length, limit) if o.max_length > 0 else limit
        if not 0 <= o.stride < length:
            raise NlpfitError(f"--stride {o.stride}: must be between 0 and --max-length ({length}) minus the question")
        return length

    def preprocess(self, raw, tokenizer, model_config, facts, *, training):
        import datasets

        max_len, stride = self.max_length(tokenizer), self.opts.stride
        features = datasets.DatasetDict()
        for split, ds in raw.items():
            fn = train_features if split == "train" and training else eval_features
            features[split] = ds.map(fn, batched=True, remove_columns=ds.column_names, desc=f"tokenizing {split}",
                                     fn_kwargs={"tokenizer": tokenizer, "max_length": max_len, "stride": stride})
            if len(features[split]) > len(ds):
                info(f"{split}: {len(ds)} questions -> {len(features[split])} windows of at most {max_len} tokens")
        return features, facts

    def collator(self, tokenizer, model):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    # ---- 3. evaluation ----------------------------------------------------------------------
    def eval_step(self, model, batch):
        out = model(**{k: v for k, v in batch.items() if k not in ("start_positions", "end_positions")})
        return {"start_logits": out.start_logits, "end_logits": out.end_logits}

    def postprocess(self, examples, features, start_logits, end_logits, null_answers: bool) -> dict[str, dict]:
        """`best_answers` with this run's settings; `features`: dicts or `Windows`."""
        o = self.opts
        return best_answers(examples, features, start_logits, end_logits, n_best=o.n_best,
                            max_answer_length=o.max_answer_length, null_answers=null_answers,
                            null_threshold=o.null_threshold)

    def predicted_texts(self, raw, features, start_logits, end_logits, null_answers: bool) -> dict[str, str]:
        """id -> answer text of every question of the `raw` Dataset from the logits of its windows
        (the `features` Dataset): `best_answers`' texts, with ids, contexts and offsets read from
        Arrow and the text cut only for the chosen span."""
        import numpy as np

        o = self.opts
        table = arrow_columns(raw, ["id", "context"])
        ids = table.column("id").combine_chunks()
        windows = dataset_windows(features)
        group, first = example_groups(ids, windows.example_id.combine_chunks())
        choices = choose_answers(group, len(ids), windows, start_logits, end_logits, n_best=o.n_best,
                                 max_answer_length=o.max_answer_length, null_answers=null_answers,
                                 null_threshold=o.null_threshold)
        texts = choices.texts(windows, table.column("context").to_pylist())
        if (first != np.arange(len(ids))).any():  # a repeated id: the answer of its first question
            texts = [texts[i] for i in first.tolist()]
        return dict(zip(ids.to_pylist(), texts))

    def compute_metrics(self, outputs, features, raw, facts, tokenizer):
        from nlpfit.metrics.squad import squad_scores

        predictions = self.predicted_texts(raw, features, outputs["start_logits"], outputs["end_logits"],
                                           facts.null_answers)
        table = arrow_columns(raw, ["id", "answers"])
        references = zip(table.column("id").to_pylist(), (a["text"] for a in table.column("answers").to_pylist()))
        metrics = squad_scores(predictions, dict(references))
        metrics["windows"] = len(features)
        return Evaluation(metrics, predictions)

    def metrics_table(self, metrics):
        if "HasAns_f1" not in metrics:
            return None
        lines = ["subset     questions  exact_match      f1"]
        for name, key in (("all", ""), ("has answer", "HasAns_"), ("no answer", "NoAns_")):
            if f"{key}total" in metrics or key == "":
                lines.append(f"{name:<10} {metrics.get(key + 'total', metrics.get('total', 0)):9d}  "
                             f"{metrics[key + 'exact_match']:11.2f}  {metrics[key + 'f1']:6.2f}")
        return "\n".join(lines)

    def extra_artifacts(self, folder, predictions) -> None:
        """OUT/predictions.json: id -> answer text of the last evaluation (test split when there is one),
        and the pipeline module that lets transformers.pipeline load OUT."""
        import shutil

        shutil.copyfile(qa_pipeline.__file__, Path(folder) / PIPELINE_FILE)
        if predictions is not None:
            (Path(folder) / "predictions.json").write_text(
                json.dumps(predictions, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    # ---- 4. prediction ----------------------------------------------------------------------
    def example_inputs(self, raw, n):
        return [{"question": q, "context": c} for q, c in zip(raw["question"][:n], raw["context"][:n])]

    def check_inputs(self, out_dir, inputs, popts):
        self.question_items(inputs, popts)

    def question_items(self, inputs, popts) -> list[dict]:
        """The {question, context} items to answer: --question/--context first, then the inputs."""
        items = []
        if popts.question is not None or popts.context is not None:
            if not popts.question or not popts.context:
                raise NlpfitError("--question and --context go together")
            items.append({"question": popts.question, "context": popts.context})
        for n, item in enumerate(inputs, 1):
            if not isinstance(item, dict) or not isinstance(item.get("question"), str) \
                    or not isinstance(item.get("context"), str):
                raise NlpfitError(f"input {n}: question answering needs {{\"question\": ..., \"context\": ...}} "
                                  "(--input JSONL rows) or --question and --context")
            items.append(item)
        for i, item in enumerate(items):
            if not item["question"].strip() or not item["context"].strip():
                raise NlpfitError(f"input {i + 1}: empty question or context")
        return items

    def load_predictor(self, out_dir):
        """(model, tokenizer, the model's facts): prediction answers nothing only if the model was trained to."""
        model, tokenizer = super().load_predictor(out_dir)
        return model, tokenizer, self.trained_facts(out_dir)

    def predict_with(self, predictor, inputs, popts):
        """Answer, score, start and end of each {question, context}, with the training windows."""
        import torch

        from nlpfit.inference import autocast, batches_by_length

        model, tokenizer, facts = predictor
        device = model.device
        items = self.question_items(inputs, popts)
        if not items:  # an empty --input file: no answers
            return
        examples = [{"id": str(i), "context": it["context"]} for i, it in enumerate(items)]
        enc = eval_features({"id": [e["id"] for e in examples], "question": [it["question"] for it in items],
                             "context": [e["context"] for e in examples]},
                            tokenizer, self.max_length(tokenizer), self.opts.stride)
        feats = [{"example_id": enc["example_id"][i], "offset_mapping": enc["offset_mapping"][i],
                  "cls_index": enc["cls_index"][i]} for i in range(len(enc["input_ids"]))]
        names = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
        rows = [{k: enc[k][i] for k in names} for i in range(len(feats))]
        collate = self.collator(tokenizer, model)
        starts: list = [None] * len(rows)
        ends: list = [None] * len(rows)
        with torch.inference_mode(), autocast(popts.precision, device, model):
            for idx in batches_by_length([len(r["input_ids"]) for r in rows], popts.batch_size, self.max_batch_padding):
                batch = {k: v.to(device) for k, v in collate([rows[i] for i in idx]).items()}
                out = model(**batch)
                for i, s, e in zip(idx, out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()):
                    starts[i], ends[i] = s, e
        answers = self.postprocess(examples, feats, starts, ends, facts.null_answers)
        for ex, item in zip(examples, items):
            a = answers[ex["id"]]
            row = {"id": item["id"]} if "id" in item else {}
            row.update({"question": item["question"], "answer": a["text"], "score": round(a["probability"], 4),
                        "start": a["start"], "end": a["end"]})
            yield row

    def card_data(self, facts, model, tokenizer):
        o = self.opts
        return {"null_answers": facts.null_answers, "max_length": o.max_length, "stride": o.stride,
                "n_best": o.n_best, "max_answer_length": o.max_answer_length, "null_threshold": o.null_threshold}
