"""Translation (the course's KDE4 en-fr chapter) on the sequence-to-sequence core of `tasks/seq2seq.py`.

Pairs come from a `translation` column of {lang: text} dicts (hub data such as kde4 with
--data-config en-fr), two columns named after the languages, or gettext catalogs (.po / .mo:
msgid -> msgstr, fuzzy and untranslated entries skipped, plurals resolved, accelerator markers
stripped).  Scores: sacreBLEU's corpus BLEU and chrF.  Multilingual tokenizers (mBART, NLLB,
M2M100) get their language codes from --source-lang-code / --target-lang-code.
Offline default data: the French catalogs of the installed Django wheel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nlpfit import NlpfitError
from nlpfit.config import opt
from nlpfit.data import kind_of
from nlpfit.data.gettext import GETTEXT_SUFFIXES
from nlpfit.log import warn
from nlpfit.tasks.seq2seq import Seq2Seq, Seq2SeqOptions, text_value


@dataclass(frozen=True)
class TranslationOptions(Seq2SeqOptions):
    source_lang: str = opt("en", "Source language (key of the translation dict, or column name).")
    target_lang: str = opt("fr", "Target language (key of the translation dict, or column name).")
    translation_column: str = opt("translation", "Column of {lang: text} dicts; without it, the columns "
                                  "named --source-lang and --target-lang are used.")
    source_lang_code: str | None = opt(None, "Source language code of a multilingual tokenizer (en_XX, eng_Latn).")
    target_lang_code: str | None = opt(None, "Target language code of a multilingual tokenizer (fr_XX, fra_Latn).")
    accelerators: str = opt("&_", "gettext catalogs: accelerator markers to strip ('' keeps them).")


class Translation(Seq2Seq):
    name = "translation"
    pipeline = "translation"
    Options = TranslationOptions
    main_metric = "bleu"
    output_key = "translation_text"
    table_keys = ("bleu", "chrf", "gen_len")

    def default_data(self) -> list[str]:
        """The French catalogs of the Django wheel: Django's own and its contrib apps'."""
        try:
            import django
        except ImportError:
            raise NlpfitError("the offline default data needs Django's catalogs: pip install django") from None
        root = Path(django.__file__).parent
        lang = self.opts.target_lang if self.opts.source_lang == "en" else self.opts.source_lang
        files = sorted((root / "conf" / "locale" / lang / "LC_MESSAGES").glob("*.po"))
        files += sorted(root.glob(f"contrib/*/locale/{lang}/LC_MESSAGES/*.po"))
        if not files:
            raise NlpfitError(f"Django ships no catalogs for {lang!r}: give --data")
        return [str(f) for f in files]

    def read_file(self, path: Path):
        if path.suffix.lower() in GETTEXT_SUFFIXES:
            import datasets

            from nlpfit.data.gettext import catalog_rows

            o = self.opts
            return datasets.Dataset.from_list(catalog_rows(path, o.source_lang, o.target_lang, o.accelerators))
        return super().read_file(path)

    def check_columns(self, columns, where):
        o = self.opts
        if o.translation_column in columns or (o.source_lang in columns and o.target_lang in columns):
            return
        raise NlpfitError(f"{where}: no {o.translation_column!r} column and no columns {o.source_lang!r} and "
                          f"{o.target_lang!r} (columns: {', '.join(columns)}); set --translation-column or "
                          "--source-lang/--target-lang")

    def pair_of(self, row, where, columns):
        o = self.opts
        src, tgt = o.source_lang, o.target_lang
        if o.translation_column in columns:
            col, pair = o.translation_column, row.get(o.translation_column)
            if not isinstance(pair, dict) or src not in pair or tgt not in pair:
                keys = ", ".join(pair) if isinstance(pair, dict) else kind_of(pair)
                raise NlpfitError(f"{where}: the {col} column has no {src}/{tgt} pair (it has {keys}); "
                                  "set --source-lang/--target-lang (and --data-config for hub data)")
            return text_value(pair[src], where, f"{col}.{src}"), text_value(pair[tgt], where, f"{col}.{tgt}")
        return text_value(row.get(src), where, src), text_value(row.get(tgt), where, tgt)

    def set_language_codes(self, tokenizer):
        o = self.opts
        if hasattr(tokenizer, "src_lang") and hasattr(tokenizer, "tgt_lang"):
            if not (o.source_lang_code and o.target_lang_code):
                warn("this tokenizer is multilingual (src_lang/tgt_lang): set --source-lang-code and "
                     "--target-lang-code (e.g. en_XX fr_XX, eng_Latn fra_Latn)")
                return
            tokenizer.src_lang, tokenizer.tgt_lang = o.source_lang_code, o.target_lang_code
        elif o.source_lang_code or o.target_lang_code:
            raise NlpfitError("--source-lang-code/--target-lang-code: this tokenizer has no language codes")

    def configure_generation(self, model, tokenizer):
        super().configure_generation(model, tokenizer)
        code = self.opts.target_lang_code
        if code and hasattr(tokenizer, "tgt_lang"):
            model.generation_config.forced_bos_token_id = tokenizer.convert_tokens_to_ids(code)

    def score(self, predictions, references):
        from nlpfit.metrics.generation import bleu_chrf

        return bleu_chrf(predictions, references)

    def input_keys(self):
        return ["text", self.opts.source_lang]

    def card_data(self, facts, model, tokenizer):
        return {"source_lang": self.opts.source_lang, "target_lang": self.opts.target_lang}
