"""gettext catalogs (`.po`, `.mo`) as translation pairs: software localisation, KDE4's own domain.

polib parses the catalog (and unescapes `\\n`, `\\t`, `\\"` in `.po` strings); this module decides
which entries make training pairs:

- the header, obsolete (`#~`), fuzzy (`#, fuzzy`) and untranslated entries are skipped;
- a plural entry gives two pairs chosen deliberately: msgid (the English singular, n = 1) with the
  target form the catalog's `Plural-Forms` rule selects for n = 1, and msgid_plural (n = 2) with the
  form selected for n = 2.  French catalogs may declare three forms (one, many, other) where index 1
  is the "many" form of millions, so taking msgstr[1] blindly would be wrong;
- accelerator markers are removed from both sides: `&File` / `_File` -> `File`, `&&` / `__` -> a
  literal `&` / `_`, and the CJK style `ファイル(&F)` -> `ファイル`.  HTML entities (`&amp;`) and
  underscores inside words (`%(field_name)s`) are left alone.
"""

from __future__ import annotations

import re
from pathlib import Path

from nlpfit import NlpfitError

GETTEXT_SUFFIXES = {".po", ".pot", ".mo"}

# "(&F)" / "(_F)" appended to a translated label (CJK convention), with optional space before it
_CJK_ACCEL = re.compile(r"\s?\((?:&|_)[^\W_]\)")


def strip_accelerators(text: str, markers: str = "&_") -> str:
    """Remove keyboard-accelerator markers: `&File` -> `File`, `&&` -> `&`, `Save _As` -> `Save As`."""
    if not markers:
        return text
    text = _CJK_ACCEL.sub("", text) if any(m in text for m in "&_") else text
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c in markers and i + 1 < n:
            nxt = text[i + 1]
            if nxt == c:  # doubled marker: a literal character
                out.append(c)
                i += 2
                continue
            if c == "&" and re.match(r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);", text[i:]):
                out.append(c)  # an HTML entity, not an accelerator
                i += 1
                continue
            prev = text[i - 1] if i else " "
            # a marker starts a word (or follows punctuation) and precedes a letter/digit
            if nxt.isalnum() and not (c == "_" and (prev.isalnum() or prev == "_")):
                i += 1
                continue
        out.append(c)
        i += 1
    return "".join(out)


def plural_indices(plural_forms: str | None) -> tuple[int, int]:
    """The target forms for n = 1 and n = 2 under a `Plural-Forms` header (C expression, evaluated by
    the standard library's `gettext.c2py`)."""
    import gettext

    match = re.search(r"plural\s*=\s*([^;]+)", plural_forms or "")
    if not match:
        return 0, 1  # no rule: the Germanic default (n != 1)
    try:
        rule = gettext.c2py(match.group(1).strip())
    except (ValueError, SyntaxError):
        return 0, 1
    return rule(1), rule(2)


_PO_STRING = rb'"(?:[^"\\]|\\.)*"'
_PO_LINE = re.compile(rb'^(?:(?:msgctxt|msgid|msgid_plural|msgstr(?:\[\d+\])?)\s+)?' + _PO_STRING + rb'$')


def check_po_syntax(path: Path) -> None:
    """Every line of a `.po` file is a comment, blank, or a keyword and string (or a continued
    string) with its closing quote: polib silently cuts a string that is not closed.  Read as bytes
    (the catalog's charset does not matter to quotes)."""
    for i, line in enumerate(path.read_bytes().removeprefix(b"\xef\xbb\xbf").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        if not _PO_LINE.match(line):
            what = "unterminated string" if line.count(b'"') % 2 else "not a gettext line"
            raise NlpfitError(f"{path}:{i}: {what} ({line[:40].decode('utf-8', 'replace')!r})")


def read_catalog(path: Path) -> tuple[list[tuple[str, str]], dict]:
    """(msgid, msgstr) pairs of a `.po`/`.mo` file and its metadata, with skip counts in the metadata."""
    import polib

    path = Path(path)
    if path.suffix.lower() != ".mo":
        check_po_syntax(path)
    try:
        cat = polib.mofile(str(path)) if path.suffix.lower() == ".mo" else polib.pofile(str(path))
    except Exception as exc:  # polib raises OSError, ValueError, struct.error, UnicodeDecodeError …
        if isinstance(exc, UnicodeDecodeError) and path.suffix.lower() != ".mo":
            from nlpfit.data import text_of_bytes

            text_of_bytes(path.read_bytes(), path)  # names the line, when the file is not UTF-8 at all
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NlpfitError(f"{path}: not a readable gettext catalog ({msg})") from None
    one, two = plural_indices(cat.metadata.get("Plural-Forms"))
    pairs: list[tuple[str, str]] = []
    skipped = {"obsolete": 0, "fuzzy": 0, "untranslated": 0}
    for entry in cat:
        if not entry.msgid:
            continue  # the header
        if entry.obsolete:
            skipped["obsolete"] += 1
            continue
        if "fuzzy" in entry.flags:
            skipped["fuzzy"] += 1
            continue
        if entry.msgid_plural:
            forms = {int(k): v for k, v in entry.msgstr_plural.items()}
            got = [(entry.msgid, forms.get(one, "")), (entry.msgid_plural, forms.get(two, ""))]
            got = [(s, t) for s, t in got if t]
            if not got:
                skipped["untranslated"] += 1
            pairs += got
        elif entry.msgstr:
            pairs.append((entry.msgid, entry.msgstr))
        else:
            skipped["untranslated"] += 1
    meta = dict(cat.metadata)
    meta["skipped"] = skipped
    return pairs, meta


def catalog_rows(path: Path, source_lang: str, target_lang: str, accelerators: str = "&_") -> list[dict]:
    """Rows {"translation": {source_lang: …, target_lang: …}} of a catalog.

    msgid is the source language of the program (English for Django and KDE); the catalog's
    `Language` header is the other side.  When `source_lang` is the catalog's language the pairs are
    reversed (e.g. fr -> en from a French catalog).
    """
    from nlpfit.log import warn

    pairs, meta = read_catalog(path)
    lang = (meta.get("Language") or "").replace("-", "_").split("_")[0].lower()
    reverse = bool(lang) and lang == source_lang.split("_")[0].lower() != target_lang.split("_")[0].lower()
    if lang and not reverse and lang != target_lang.split("_")[0].lower():
        warn(f"{path}: the catalog's Language is {meta.get('Language')!r}, not --target-lang {target_lang}")
    rows, seen = [], set()
    for msgid, msgstr in pairs:
        src, tgt = strip_accelerators(msgid, accelerators), strip_accelerators(msgstr, accelerators)
        if reverse:
            src, tgt = tgt, src
        if not src.strip() or not tgt.strip() or (src, tgt) in seen:
            continue
        seen.add((src, tgt))
        rows.append({"translation": {source_lang: src, target_lang: tgt}})
    if not rows:
        raise NlpfitError(f"{path}: no translated entries (skipped: "
                          + ", ".join(f"{n} {k}" for k, n in meta["skipped"].items()) + ")")
    return rows
