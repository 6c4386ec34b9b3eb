"""Tokenizer training: the byte-level BPE of `nlpfit tokenizer train` and of `nlpfit train clm`, and
the Unigram tokenizer of the from-scratch sequence-to-sequence model.

With `--from TOK` (an existing fast tokenizer: hub id or folder) the new tokenizer keeps TOK's
normalisation, pre-tokenisation and special tokens and only learns a new vocabulary
(`train_new_from_iterator`, as the course does with GPT-2's tokenizer).  Without it the tokenizer is
built from scratch with `tokenizers`: GPT-2's byte-level pre-tokenizer and decoder, the 256 byte
symbols as initial alphabet and `<|endoftext|>` as the single special token (bos = eos = unk), saved
as a standard transformers tokenizer folder (GPT2Tokenizer, tokenizer.json).

The corpus is streamed (never held in memory), and a report compares tokens per file of the new
tokenizer with baselines on held-out files: that is the reason to train one.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Iterable, Iterator

from nlpfit import NlpfitError
from nlpfit.log import info, warn

EOT = "<|endoftext|>"


def batched(texts: Iterable[str], size: int = 1000) -> Iterator[list[str]]:
    batch: list[str] = []
    for t in texts:
        batch.append(t)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2, base=None, model_max_length: int = 1024):
    """A byte-level BPE fast tokenizer trained on `texts` (from `base`'s pipeline when given)."""
    if vocab_size < 257 + 1:
        raise NlpfitError(f"--vocab-size {vocab_size}: a byte-level BPE needs more than 257 entries (256 bytes + "
                          f"{EOT})")
    if base is not None:
        if not getattr(base, "is_fast", False):
            raise NlpfitError("--from: train_new_from_iterator needs a fast tokenizer (tokenizer.json)")
        return base.train_new_from_iterator(batched(texts), vocab_size)

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(batched(texts), trainer=trainer)
    return GPT2TokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT, unk_token=EOT,
                             model_max_length=model_max_length)


def train_unigram(texts, vocab_size: int, model_max_length: int = 512):
    """A SentencePiece-style Unigram tokenizer trained by `tokenizers`: </s> ends every sequence."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                           unk_token="<unk>", shrinking_factor=0.75))
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A $B </s>",
                                                       special_tokens=[("</s>", eos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=model_max_length)


def tokens_per_file(tokenizer, texts: list[str]) -> dict:
    """How many tokens each file becomes (mean / median) and characters per token."""
    counts = [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]
    chars = sum(len(t) for t in texts)
    return {"files": len(texts), "mean_tokens": round(statistics.fmean(counts), 1) if counts else 0.0,
            "median_tokens": statistics.median(counts) if counts else 0, "total_tokens": sum(counts),
            "chars_per_token": round(chars / max(sum(counts), 1), 3)}


def byte_baseline(texts: list[str]) -> dict:
    """A byte-level BPE before any merge: one token per UTF-8 byte."""
    counts = [len(t.encode("utf-8")) for t in texts]
    chars = sum(len(t) for t in texts)
    return {"files": len(texts), "mean_tokens": round(statistics.fmean(counts), 1) if counts else 0.0,
            "median_tokens": statistics.median(counts) if counts else 0, "total_tokens": sum(counts),
            "chars_per_token": round(chars / max(sum(counts), 1), 3)}


def compare(new_tok, texts: list[str], baselines: dict) -> dict:
    """{name: tokens-per-file stats} for the new tokenizer and each baseline (name -> tokenizer)."""
    rows = {"bytes (byte-level BPE before merges)": byte_baseline(texts)}
    for name, tok in baselines.items():
        rows[name] = tokens_per_file(tok, texts)
    rows["new tokenizer"] = tokens_per_file(new_tok, texts)
    return rows


def report_table(rows: dict) -> str:
    width = max(len(k) for k in rows)
    lines = [f"{'tokenizer':<{width}}  files  mean tokens/file  median  chars/token"]
    for name, r in rows.items():
        lines.append(f"{name:<{width}}  {r['files']:5d}  {r['mean_tokens']:16.1f}  {r['median_tokens']:6.0f}  "
                     f"{r['chars_per_token']:11.3f}")
    return "\n".join(lines)


def offline_baselines() -> dict:
    """Pretrained tokenizers available without network, to compare with (the packaged MiniLM's
    uncased WordPiece: a general-English tokenizer, as GPT-2's is for the course)."""
    out = {}
    try:
        from nlpfit.models import load_tokenizer, packaged_minilm

        out["MiniLM WordPiece (pretrained, English)"] = load_tokenizer(packaged_minilm())
    except NlpfitError:
        pass
    return out


def train_tokenizer_folder(data: list[str], vocab_size: int, output: str, base_spec: str | None, *, glob: str,
                            text_column: str, data_config: str | None, filter_keywords: str | None,
                            min_frequency: int, max_files: int, validation_split: float | None, split_seed: int,
                            compare_files: int, overwrite: bool) -> dict:
    from nlpfit.data.code import DS_KEYWORDS, CodeCorpus, default_sources, parse_keywords

    from nlpfit.run import check_output

    out = Path(output)
    check_output(out, overwrite)
    if validation_split is None:  # as `nlpfit train clm`: its default data holds out 5%, --validation-split 0.1
        validation_split = 0.05 if not data else 0.1
    if not data:
        data = default_sources()
        keywords = DS_KEYWORDS if filter_keywords is None else parse_keywords(filter_keywords)
        info(f"--data not given: the Python standard library and installed packages ({', '.join(data)}), "
             f"filtered by {','.join(keywords) or 'nothing'}")
    else:
        keywords = parse_keywords(filter_keywords)
    corpus = CodeCorpus(tuple(data), glob=glob, text_column=text_column, config=data_config, keywords=tuple(keywords),
                        validation=validation_split, seed=split_seed)
    base = None
    if base_spec:
        from nlpfit.models import load_tokenizer, resolve_tokenizer

        base = load_tokenizer(resolve_tokenizer(base_spec, "--from"), option="--from")
    started = time.time()
    n_train = 0

    def training_texts():
        nonlocal n_train
        for text in corpus.texts("train", limit=max_files):
            n_train += 1
            yield text

    tokenizer = train_bpe(training_texts(), vocab_size, min_frequency, base)
    report = corpus.report
    if n_train == 0:
        raise NlpfitError(f"--data {', '.join(data)}: no training documents ({report.summary(list(keywords))}; "
                          f"--glob {glob})")
    info(f"read {report.summary(list(keywords))}; trained on {n_train} files in {time.time() - started:.1f} s; "
         f"vocabulary {len(tokenizer)}")

    # tokens per file on held-out files (the validation share), against the baselines
    held_out = list(corpus.texts("validation", limit=compare_files)) if validation_split > 0 else []
    if not held_out:
        held_out = list(corpus.texts("train", limit=compare_files))
        warn("no held-out files: the tokens-per-file report uses training files")
    baselines = {f"--from {base_spec}": base} if base is not None else {}
    baselines.update(offline_baselines())
    rows = compare(tokenizer, held_out, baselines)

    tmp = out.parent / f".{out.name}.nlpfit-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    facts = {"vocab_size": len(tokenizer), "from": base_spec, "data": list(data), "glob": glob,
             "filter_keywords": list(keywords), "trained_files": n_train, "scan": {
                 "total": report.total, "kept": report.kept, "binary": report.binary,
                 "undecodable": report.undecodable, "empty": report.empty},
             "tokens_per_file": rows, "runtime_s": round(time.time() - started, 1)}
    try:  # written aside, moved into place when complete
        tokenizer.save_pretrained(tmp)
        (tmp / "nlpfit_tokenizer.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    info(f"saved {out}")
    return facts
