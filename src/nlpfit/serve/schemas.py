"""Pydantic models of one task's requests and rows, generated from its PredictOptions dataclass.

`GET /openapi.json` (and `/docs`) then say, per task, what `inputs` holds, every option with its
type, default, help and choices, and the fields of the rows that come back.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema, create_model, model_validator
from typing_extensions import Annotated

_TYPES = {"int": int, "float": float, "bool": bool, "str": str}
STRICT = ConfigDict(extra="forbid", strict=True)


class ErrorResponse(BaseModel):
    """Every error: one line."""

    error: str = Field(description="What was wrong, in one line.")


def _annotation(f: dataclasses.Field):
    ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    parts = ann.replace(" ", "").split("|")
    typ: Any = _TYPES.get(parts[0], Any)
    choices = f.metadata.get("choices")
    if choices:
        typ = Literal[tuple(choices)]
    if "None" in parts:
        typ = Optional[typ]
    return typ


def _bounds(name: str, limits: dict) -> dict:
    """The range of a generation or fill-mask option that the model (or numpy's seed) accepts:
    outside it, generation fails inside transformers rather than saying what was wrong."""
    positions, vocab = limits.get("positions"), limits.get("vocab")
    return {"seed": {"ge": 0, "le": 2**32 - 1}, "top_p": {"ge": 0, "le": 1}, "temperature": {"ge": 0},
            "num_beams": {"ge": 0, "le": 64}, "num_return_sequences": {"ge": 1, "le": 64},
            "max_new_tokens": {"ge": 0, **({"le": positions} if positions else {})},
            "top_k": {"ge": 1, **({"le": vocab} if vocab else {})}}.get(name, {})


def options_model(prefix: str, fields: list[dataclasses.Field], defaults: dict, limits: dict | None = None) -> type[BaseModel]:
    """The `options` object: each prediction option (type, the server's default, help, choices,
    the range the model accepts) and `batch_size`. Unknown options, wrong types and values outside
    the choices or the range are rejected."""
    spec: dict[str, Any] = {}
    for f in fields:
        typ = _annotation(f)
        bounds = _bounds(f.name, limits or {}) if typ in (int, float) else {}
        spec[f.name] = (typ, Field(default=defaults.get(f.name), description=f.metadata.get("help"), **bounds))
    spec["batch_size"] = (Optional[int], Field(default=defaults.get("batch_size"), ge=1,
                                               description="Inference batch size (default: the server's)."))
    return create_model(f"{prefix}Options", __config__=STRICT,
                        __doc__="Prediction options; each overrides the server's default for this request.", **spec)


def _source_item(value):
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value and all(isinstance(v, str) for v in value.values()):
        return value
    raise ValueError('expected a text, or an object of texts such as {"text": "..."}')


SOURCE = Annotated[Any, PlainValidator(_source_item), WithJsonSchema({
    "anyOf": [{"type": "string"}, {"type": "object", "additionalProperties": {"type": "string"}}],
    "description": 'A text, or an object holding it in a field the task reads ("text", or the source '
                   'language / text column the model was trained on).'})]

_INPUTS = {
    "token-classification": (str, "Texts to tag."),
    "fill-mask": (str, "Texts with one or more masks, written [MASK] or <mask>."),
    "text-generation": (str, "Prompts to continue."),
    "translation": (SOURCE, "Texts to translate."),
    "summarization": (SOURCE, "Texts to summarize."),
}


def input_item(prefix: str, kind: str):
    """The type of one input of this task kind."""
    if kind == "question-answering":
        return create_model(f"{prefix}Input", __config__=STRICT, __doc__="A question about a context.",
                            question=(str, Field(description="The question.")),
                            context=(str, Field(description="The text that holds the answer.")),
                            id=(Optional[str], Field(default=None, description="Echoed back in the row.")))
    return _INPUTS.get(kind, (Any, ""))[0]


def _one_input(cls, data):
    """`"inputs": "text"` (or one object) is a list of one."""
    if isinstance(data, dict) and isinstance(data.get("inputs"), (str, dict)):
        data = {**data, "inputs": [data["inputs"]]}
    return data


def request_model(prefix: str, kind: str, item, options: type[BaseModel], max_inputs: int) -> type[BaseModel]:
    what = "Questions, each with its context." if kind == "question-answering" else _INPUTS.get(kind, (0, "Inputs."))[1]
    return create_model(
        f"{prefix}PredictRequest", __config__=STRICT,
        __doc__="POST /predict: inputs and, optionally, options for this request.",
        __validators__={"one_input": model_validator(mode="before")(classmethod(_one_input))},
        inputs=(list[item], Field(min_length=1, description=f"{what} One input alone counts as a list of one; "
                                  f"at most {max_inputs} per request (413 beyond).",
                                  json_schema_extra={"maxItems": max_inputs})),
        options=(Optional[options], Field(default=None, description="Overrides of the server's prediction options.")))


def row_model(prefix: str, kind: str) -> type[BaseModel]:
    """One row of `predictions`: what `nlpfit predict` prints for one input."""
    m = lambda name, doc, **fields: create_model(f"{prefix}{name}", __doc__=doc, **fields)  # noqa: E731
    if kind == "token-classification":
        entity = m("Entity", "An entity (or, with aggregation none, a token) found in the text.",
                   entity_group=(str, Field(description="The label (B-/I- tags with aggregation none).")),
                   score=(float, Field(description="The model's probability, rounded to 4 decimals.")),
                   word=(str, Field(description="The words of the entity, as the tokenizer decodes them.")),
                   start=(Optional[int], Field(description="Offset of the first character in the text.")),
                   end=(Optional[int], Field(description="Offset after the last character.")))
        return m("Row", "The entities of one text.", text=(str, ...), entities=(list[entity], ...))
    if kind == "fill-mask":
        cand = m("Candidate", "A word for a mask.", sequence=(str, Field(description="The text with the word in.")),
                 token=(str, Field(description="The word (token) for the mask.")),
                 score=(float, Field(description="Its probability, rounded to 4 decimals.")))
        return m("Row", "The best candidates for each mask of one text.", text=(str, ...),
                 predictions=(list[cand] | list[list[cand]],
                              Field(description="top_k candidates; a list per mask when the text has several.")))
    if kind == "question-answering":
        return m("Row", "The answer to one question.",
                 id=(Optional[str], Field(default=None, description="The input's id, when it has one.")),
                 question=(str, ...), answer=(str, Field(description='The answer cut from the context ("": none).')),
                 score=(float, Field(description="Its probability, rounded to 4 decimals.")),
                 start=(int, Field(description="Character offset of the answer in the context.")),
                 end=(int, Field(description="Offset after its last character.")))
    if kind == "text-generation":
        return m("Row", "The continuations of one prompt.", text=(str, Field(description="The prompt.")),
                 completions=(list[str], Field(description="num_return_sequences continuations (prompt excluded).")))
    if kind in ("translation", "summarization"):
        key = "translation_text" if kind == "translation" else "summary_text"
        return m("Row", f"The {kind} of one text.", text=(str, Field(description="The source text.")),
                 **{key: (str, Field(description="The generated text."))})
    return create_model(f"{prefix}Row", __config__=ConfigDict(extra="allow"))


def response_model(prefix: str, row: type[BaseModel]) -> type[BaseModel]:
    return create_model(f"{prefix}PredictResponse", __doc__="The rows, one per input, in input order.",
                        predictions=(list[row], ...))


def stream_event_model(prefix: str, row: type[BaseModel]) -> type[BaseModel]:
    return create_model(
        f"{prefix}StreamEvent",
        __doc__="The JSON of one server-sent event of POST /predict/stream: text as it is generated, "
                "then the row (or an error).",
        token=(Optional[str], Field(default=None, description="The next piece of generated text.")),
        done=(Optional[bool], Field(default=None, description="true on the last event, with the row.")),
        row=(Optional[row], Field(default=None, description="The row POST /predict returns for this input.")),
        error=(Optional[str], Field(default=None, description="Why the generation stopped, when it failed.")))


class TaskSchemas:
    """The models of one server's task."""

    def __init__(self, name: str, kind: str, fields: list[dataclasses.Field], defaults: dict, max_inputs: int,
                 limits: dict | None = None):
        prefix = "".join(part.capitalize() for part in name.replace("-", "_").split("_"))
        self.item = input_item(prefix, kind)
        self.options = options_model(prefix, fields, defaults, limits)
        self.request = request_model(prefix, kind, self.item, self.options, max_inputs)
        self.row = row_model(prefix, kind)
        self.response = response_model(prefix, self.row)
        self.stream_event = stream_event_model(prefix, self.row)
