"""Greedy decoding for encoder-decoder models, generate()'s ids without generate()'s per-step work.

`generate(model, input_ids, attention_mask, ...)` is `model.generate(...)`, except that plain greedy
search (`greedy_settings` says when a generation_config asks for nothing else) runs `greedy`: one
decoder step per token, the argmax, the forced end of sequence at the limit, pad after a row's end,
rows leaving the batch as they end (generate()'s ids but for near-ties that turn on the rounding of
matrix products of a smaller batch: see `greedy`).  A step is one of two things:

- `ModelStep`: the model's own forward with its key/value cache, for any encoder-decoder.  The
  cache's self-attention layers write each new token into buffers that grow by doubling
  (`GrowingLayer`) instead of concatenating the whole cache again at every token.
- `MarianStep`: for Marian models (the from-scratch model of both seq2seq tasks, and the
  Helsinki-NLP opus-mt family), the same layers called directly: the model's embeddings, linear
  layers, norms, activation and attention function, the encoder's keys and values projected once,
  without the per-token mask building, cache bookkeeping and output objects of the model's forward.
  The same operations in the same order: the same logits as the model's forward, bit for bit (tested,
  fp32 and bf16, sdpa and eager attention).

Anything else (beams, sampling, penalties, banned tokens, ...) goes through generate().
"""

from __future__ import annotations

import copy

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer, EncoderDecoderCache


def length_groups(attention_mask, max_padding: float | None = 0.25):
    """Groups of rows of similar length in a right-padded batch whose padding is more than `max_padding`
    of its tokens, as (row indices, longest length) with `inference.batches_by_length`'s rule (a group
    ends where a row is shorter than (1 - max_padding) times its longest); None for a batch that is
    not worth cutting (or not right-padded)."""
    import torch

    from nlpfit.inference import batches_by_length

    n, width = attention_mask.shape
    lengths = attention_mask.sum(dim=1)
    right_padded = torch.equal(attention_mask.bool(), torch.arange(width, device=lengths.device) < lengths[:, None])
    if max_padding is None or n == 1 or not right_padded or int(lengths.sum()) >= (1 - max_padding) * n * width:
        return None
    return [(torch.tensor(group, device=attention_mask.device), int(lengths[group[0]]))
            for group in batches_by_length(lengths.tolist(), n, max_padding)]


def encode(model, input_ids, attention_mask, groups=None):
    """The encoder's output for a batch (what generate() computes first).

    A decoder's batch keeps sources of very different lengths together (its cost is one step per token
    for the whole batch), but the encoder's cost is the padded tokens it computes: with `groups`
    (`length_groups`), each group of rows is encoded cut to its longest row, and the outputs go back in
    the batch's rows, zeros past the group's longest row (padding, which the encoder mask hides from
    every cross-attention).  A row's states are then those of its group, equal to the whole batch's up to the
    rounding of matrix products of another size."""
    from transformers.modeling_outputs import BaseModelOutput

    encoder = model.get_encoder()
    if not groups:
        return encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
    hidden = None
    for rows, longest in groups:
        out = encoder(input_ids=input_ids[rows, :longest], attention_mask=attention_mask[rows, :longest],
                      return_dict=True).last_hidden_state
        if hidden is None:
            hidden = out.new_zeros(*attention_mask.shape, out.shape[-1])
        hidden[rows, :longest] = out
    return BaseModelOutput(last_hidden_state=hidden)


# ---- which generation settings greedy reproduces ---------------------------------------------------
#: the values of generation settings with which generate() is the greedy search `greedy` reproduces (None,
#: generate()'s default, always is): the greedy values themselves, and the values at which generate() adds
#: no logits processor (a generation_config saved by Seq2SeqTrainer spells all of these out)
_GREEDY_VALUES = {"num_beams": (1,), "num_beam_groups": (1,), "do_sample": (False,), "num_return_sequences": (1,),
                  "output_attentions": (False,), "output_hidden_states": (False,), "output_scores": (False,),
                  "output_logits": (False,), "return_dict_in_generate": (False,), "use_cache": (True,),
                  "min_length": (0,), "min_new_tokens": (0,), "repetition_penalty": (1.0,),
                  "encoder_repetition_penalty": (1.0,), "no_repeat_ngram_size": (0,),
                  "encoder_no_repeat_ngram_size": (0,), "guidance_scale": (1.0,), "remove_invalid_values": (False,),
                  "renormalize_logits": (False,), "diversity_penalty": (0.0,), "penalty_alpha": (0.0,),
                  "is_assistant": (False,), "token_healing": (False,), "low_memory": (False,)}
#: settings that do not change greedy search's ids: the ids themselves and limits, which `greedy_settings`
#: reads; beam-search and sampling parameters (unused with one beam and no sampling); those of assisted
#: decoding (unused without an assistant model) and of compilation
_GREEDY_FREE = {"decoder_start_token_id", "eos_token_id", "pad_token_id", "bos_token_id", "forced_eos_token_id",
                "max_new_tokens", "max_length", "early_stopping", "length_penalty", "_from_model_config",
                "transformers_version", "temperature", "top_k", "top_p", "min_p", "top_h", "typical_p",
                "epsilon_cutoff", "eta_cutoff", "num_assistant_tokens", "num_assistant_tokens_schedule",
                "assistant_confidence_threshold", "assistant_lookbehind", "target_lookbehind",
                "compile_config", "disable_compile"}


def greedy_settings(model, overrides: dict):
    """(decoder start id, eos ids, pad id, forced eos ids, new-token limit) when generate() with the model's
    generation_config and `overrides` is plain greedy search that `greedy` reproduces exactly; None when
    it is anything else (beams, sampling, a logits processor the loop does not apply, ...)."""
    gc = getattr(model, "generation_config", None)
    if gc is None or not getattr(model.config, "is_encoder_decoder", False):
        return None
    gc = copy.deepcopy(gc)
    gc.update(**overrides)
    for key, value in gc.to_dict().items():
        if key in _GREEDY_FREE or value is None:
            continue
        if key not in _GREEDY_VALUES or value not in _GREEDY_VALUES[key]:
            return None

    def ids(value):
        return [] if value is None else [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]

    eos = ids(gc.eos_token_id)
    start = gc.decoder_start_token_id if gc.decoder_start_token_id is not None else gc.bos_token_id
    pad = gc.pad_token_id if gc.pad_token_id is not None else (eos[0] if eos else None)
    if isinstance(start, (list, tuple)) or start is None or pad is None:
        return None
    limit = gc.max_new_tokens if gc.max_new_tokens is not None else (
        gc.max_length - 1 if gc.max_length is not None else None)
    if limit is None or limit < 1:
        return None
    return int(start), eos, int(pad), ids(gc.forced_eos_token_id), int(limit)


# ---- decoder steps ---------------------------------------------------------------------------------------
class GrowingLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are views of buffers that double when full: a new token is
    one copy into the buffer, not a concatenation of the whole cache.  Whatever replaces `keys` from
    outside (reorder_cache, crop, ...) is copied into fresh buffers at the next update."""

    _view = None

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length = self.keys.shape[-2] if self.keys.numel() else 0
        need = length + key_states.shape[-2]
        if self.keys is not self._view or need > self._keys.shape[-2]:
            capacity = max(need, 2 * length, 16)
            keys = key_states.new_empty(*key_states.shape[:-2], capacity, key_states.shape[-1])
            values = value_states.new_empty(*value_states.shape[:-2], capacity, value_states.shape[-1])
            if length:
                keys[..., :length, :] = self.keys
                values[..., :length, :] = self.values
            self._keys, self._values = keys, values
        self._keys[..., length:need, :] = key_states
        self._values[..., length:need, :] = value_states
        self.keys = self._view = self._keys[..., :need, :]
        self.values = self._values[..., :need, :]
        return self.keys, self.values


class GrowingCache(DynamicCache):
    """A DynamicCache of `GrowingLayer`s."""

    def __init__(self):
        Cache.__init__(self, layer_class_to_replicate=GrowingLayer)


class ModelStep:
    """A decoder step through the model's own forward (any encoder-decoder), its self-attention cache
    growing in place."""

    def __init__(self, model, encoder_outputs, attention_mask):
        import inspect

        self.model, self.hidden, self.mask = model, encoder_outputs, attention_mask
        self.cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.cache = EncoderDecoderCache(GrowingCache(), DynamicCache())

    def __call__(self, last_ids, position: int):
        """Next-token logits [rows, vocab] for the rows' last tokens ([rows, 1]) at `position`."""
        out = self.model(encoder_outputs=self.hidden, attention_mask=self.mask, decoder_input_ids=last_ids,
                         use_cache=True, return_dict=True, **{self.cache_kw: self.cache})
        self.cache = out.cache if "cache" in out else out.past_key_values
        return out.logits[:, -1, :]

    def keep(self, rows):
        """Only these rows of the batch from now on."""
        self.cache.reorder_cache(rows)
        self.hidden = type(self.hidden)(last_hidden_state=self.hidden.last_hidden_state.index_select(0, rows))
        self.mask = self.mask.index_select(0, rows)


class MarianStep:
    """A decoder step of a Marian model, its decoder layers run directly: token embedding times the
    embedding scale plus the sinusoidal position, then per layer self-attention over the cached keys,
    residual and norm, cross-attention over the encoder output, residual and norm, feed-forward,
    residual and norm (MarianDecoderLayer's order), then lm_head plus final_logits_bias.  Attention is the
    model's attention function (`config._attn_implementation`), with the encoder mask the decoder builds."""

    def __init__(self, model, encoder_outputs, attention_mask, limit: int):
        from transformers.masking_utils import create_bidirectional_mask
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
        from transformers.models.marian.modeling_marian import eager_attention_forward

        self.model = model
        self.decoder = decoder = model.model.decoder
        self.attend = ALL_ATTENTION_FUNCTIONS.get_interface(decoder.config._attn_implementation,
                                                           eager_attention_forward)
        # eager attention's matrix products round by memory layout: give it the cache's contiguous keys
        self.contiguous = decoder.config._attn_implementation == "eager"
        hidden = encoder_outputs.last_hidden_state
        n = hidden.shape[0]
        self.cross = []  # per layer: the encoder output's keys and values, computed once
        for layer in decoder.layers:
            attn = layer.encoder_attn
            shape = (n, hidden.shape[1], -1, attn.head_dim)
            # contiguous, as the model's cache stores them (eager attention's matmul rounds by layout)
            self.cross.append((attn.k_proj(hidden).view(shape).transpose(1, 2).contiguous(),
                               attn.v_proj(hidden).view(shape).transpose(1, 2).contiguous()))
        self.cross_mask = create_bidirectional_mask(config=decoder.config, inputs_embeds=hidden[:, :1],
                                                    attention_mask=attention_mask, encoder_hidden_states=hidden)
        self.limit = limit
        self.keys: list = [None] * len(decoder.layers)  # per layer [rows, heads, limit, head_dim]
        self.values: list = [None] * len(decoder.layers)

    #: the attention implementations whose masks and kernels this step passes as the model does
    ATTENTION = ("sdpa", "eager")

    @staticmethod
    def applies(model) -> bool:
        """A Marian model in evaluation mode whose decoder is the one this step reproduces, with sdpa or
        eager attention, its weights in place (no accelerate hooks that load them in a module's forward)."""
        try:
            from transformers.models.marian.modeling_marian import MarianMTModel, MarianSinusoidalPositionalEmbedding
        except ImportError:  # pragma: no cover - a transformers without Marian
            return False
        if type(model) is not MarianMTModel or model.training:
            return False
        decoder = model.model.decoder
        if decoder.config._attn_implementation not in MarianStep.ATTENTION:
            return False
        if any(hasattr(m, "_hf_hook") for m in model.modules()) or any(p.is_meta for p in model.parameters()):
            return False
        return (isinstance(decoder.embed_positions, MarianSinusoidalPositionalEmbedding)
                and not hasattr(decoder, "layernorm_embedding") and not hasattr(decoder, "layer_norm"))

    def _attention(self, attn, query, keys, values, mask, rows: int):
        out, _ = self.attend(attn, query, keys, values, mask, dropout=0.0, scaling=attn.scaling)
        return attn.out_proj(out.reshape(rows, 1, -1).contiguous())

    def __call__(self, last_ids, position: int):
        decoder = self.decoder
        rows = last_ids.shape[0]
        hidden = decoder.embed_tokens(last_ids) * decoder.embed_scale
        hidden = hidden + decoder.embed_positions.weight[position]
        for i, layer in enumerate(decoder.layers):
            attn = layer.self_attn
            shape = (rows, 1, -1, attn.head_dim)
            query = attn.q_proj(hidden).view(shape).transpose(1, 2)
            key = attn.k_proj(hidden).view(shape).transpose(1, 2)
            value = attn.v_proj(hidden).view(shape).transpose(1, 2)
            if self.keys[i] is None:
                self.keys[i] = key.new_empty(rows, key.shape[1], self.limit, key.shape[3])
                self.values[i] = value.new_empty(rows, value.shape[1], self.limit, value.shape[3])
            self.keys[i][:, :, position:position + 1] = key
            self.values[i][:, :, position:position + 1] = value
            keys, values = self.keys[i][:, :, :position + 1], self.values[i][:, :, :position + 1]
            if self.contiguous:
                keys, values = keys.contiguous(), values.contiguous()
            out = self._attention(attn, query, keys, values, None, rows)
            hidden = layer.self_attn_layer_norm(hidden + out)
            attn = layer.encoder_attn
            query = attn.q_proj(hidden).view(shape).transpose(1, 2)
            out = self._attention(attn, query, *self.cross[i], self.cross_mask, rows)
            hidden = layer.encoder_attn_layer_norm(hidden + out)
            out = layer.fc2(layer.activation_fn(layer.fc1(hidden)))
            hidden = layer.final_layer_norm(hidden + out)
        return (self.model.lm_head(hidden) + self.model.final_logits_bias)[:, -1, :]

    def keep(self, rows):
        self.keys = [None if k is None else k.index_select(0, rows) for k in self.keys]
        self.values = [None if v is None else v.index_select(0, rows) for v in self.values]
        self.cross = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in self.cross]
        if self.cross_mask is not None:
            self.cross_mask = self.cross_mask.index_select(0, rows)


def decoder_step(model, encoder_outputs, attention_mask, limit: int):
    """The fastest step that reproduces the model's forward: `MarianStep` where it applies, else `ModelStep`."""
    if MarianStep.applies(model):
        return MarianStep(model, encoder_outputs, attention_mask, limit)
    return ModelStep(model, encoder_outputs, attention_mask)


# ---- the greedy loop -------------------------------------------------------------------------------------
def greedy(model, encoder_outputs, attention_mask, settings, compact: bool = True, step=None):
    """Greedy decoding from the encoder output, the ids generate() gives for `settings`
    (`greedy_settings`): one decoder step per token (`decoder_step`, or `step`), the argmax token, the
    forced end of sequence at the limit, pad after a row's end; it stops when every row has ended or at
    the limit.  With `compact`, rows that have ended leave the batch (their cache, encoder output and
    mask rows are dropped) once a quarter of the batch has ended, so later steps compute only the rows
    still decoding.  Matrix-product kernels round by the number of rows, so a row's logits in a smaller
    batch can differ from the full batch's in the last bits, which turns a near-tie between two tokens
    now and then (as generate() of the same text in a batch of another size does); `compact=False`
    gives generate()'s ids for the batch exactly."""
    start, eos, pad, forced_eos, limit = settings
    device = attention_mask.device
    n = attention_mask.shape[0]
    out_ids = torch.full((n, limit + 1), pad, dtype=torch.long, device=device)
    out_ids[:, 0] = start
    last = out_ids[:, :1]
    rows = torch.arange(n, device=device)  # the output row of each row in the batch
    eos_ids = torch.tensor(eos, dtype=torch.long, device=device)
    unfinished = torch.ones(n, dtype=torch.bool, device=device)
    forced = min(forced_eos) if forced_eos else None  # the argmax of a row that is 0 at these ids, -inf elsewhere
    length = 1
    with torch.no_grad():
        if step is None:
            step = decoder_step(model, encoder_outputs, attention_mask, limit)
        for position in range(limit):
            if forced is not None and position == limit - 1:  # generate()'s ForcedEOSTokenLogitsProcessor
                next_ids = torch.full((len(rows),), forced, dtype=torch.long, device=device)
            else:
                next_ids = step(last, position).argmax(dim=-1)
            next_ids = torch.where(unfinished, next_ids, pad)
            out_ids[rows, position + 1] = next_ids
            length = position + 2
            last = next_ids[:, None]
            if not len(eos):
                continue
            unfinished &= ~torch.isin(next_ids, eos_ids)
            left = int(unfinished.sum())
            if not left:
                break
            if compact and position < limit - 2 and (len(rows) - left) * 4 >= len(rows):
                keep = unfinished.nonzero().squeeze(1)
                step.keep(keep)
                rows, last, unfinished = rows[keep], last[keep], unfinished[keep]
    return out_ids[:, :length]


def generate(model, input_ids, attention_mask, encoder_outputs=None, **overrides):
    """`model.generate(input_ids=..., attention_mask=..., **overrides)`, from the encoder output when one
    is given (the encoder does not run again).  Plain greedy search (`greedy_settings`) runs the
    `greedy` loop instead, from sources encoded in groups of similar length (`length_groups`):
    generate()'s ids, except where a near-tie between two tokens turns on the rounding of matrix
    products of another batch size (`greedy`, `encode`).  generate() may expand `encoder_outputs` in
    place for beams: use it for nothing else afterwards."""
    model = getattr(model, "module", model)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    # a generate() replaced on the model itself (the server's streaming wrapper) is the one to call
    settings = None if "generate" in vars(model) else greedy_settings(model, overrides)
    if settings is not None:
        if encoder_outputs is None:
            encoder_outputs = encode(model, input_ids, attention_mask, length_groups(attention_mask))
        return greedy(model, encoder_outputs, attention_mask, settings)
    if encoder_outputs is None:
        return model.generate(input_ids=input_ids, attention_mask=attention_mask, **overrides)
    return model.generate(attention_mask=attention_mask, encoder_outputs=encoder_outputs, **overrides)
