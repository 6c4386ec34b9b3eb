"""Translation / summarization pipeline for a sequence-to-sequence model folder saved by nlpfit.

transformers 5 removed its "translation" and "summarization" pipelines; this file is copied into the
model folder and named in config.json (`custom_pipelines`), so that

    from transformers import pipeline
    pipe = pipeline("translation", model="OUT", trust_remote_code=True)   # or "summarization"
    pipe("Delete the selected items")  # -> [{"translation_text": "..."}]

works with transformers alone.  Generation follows the folder's generation_config.json; keyword
arguments such as num_beams=4 or max_new_tokens=64 override it.  Only transformers and torch are used.
"""

from transformers import Pipeline

GENERATE_KWARGS = ("num_beams", "max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "length_penalty",
                   "no_repeat_ngram_size", "early_stopping", "num_return_sequences", "min_new_tokens")


class Seq2SeqGenerationPipeline(Pipeline):
    def __call__(self, inputs, **kwargs):
        result = super().__call__(inputs, **kwargs)
        # a list of texts gives one dict per text (as the transformers 4 pipelines did)
        if isinstance(inputs, list) and all(isinstance(r, list) and len(r) == 1 for r in result):
            return [r[0] for r in result]
        return result

    def _sanitize_parameters(self, truncation=None, **kwargs):
        generate = {k: kwargs.pop(k) for k in list(kwargs) if k in GENERATE_KWARGS}
        generate.update(kwargs.pop("generate_kwargs", {}) or {})
        preprocess = {"truncation": True if truncation is None else truncation}
        return preprocess, generate, {}

    def preprocess(self, text, truncation=True):
        if not isinstance(text, str):
            raise ValueError(f"expected a string, got {type(text).__name__}")
        prefix = getattr(self.model.config, "prefix", None) or ""
        return self.tokenizer(prefix + text, return_tensors="pt", truncation=truncation)

    def _forward(self, model_inputs, **generate_kwargs):
        return {"output_ids": self.model.generate(**model_inputs, **generate_kwargs)}

    def postprocess(self, model_outputs):
        key = "summary_text" if self.task == "summarization" else "translation_text"
        texts = self.tokenizer.batch_decode(model_outputs["output_ids"], skip_special_tokens=True)
        return [{key: t.strip()} for t in texts]
