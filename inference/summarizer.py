"""``Summarizer``: short Persian summaries of news articles from a trained mT5 directory or hub id.

Texts are normalized the way the model was trained and truncated to the length the model reads
(how many were cut is logged once per call, at INFO). Decoding defaults come from the model's
``generation_config``; each call may override them. Batches are sorted by length and the input
order restored. mT5's tokenizer reads a half-space (ZWNJ) as a space, so its summaries come back
with ``رسانه ها`` for ``رسانه‌ها``: they get normalization's half-space repairs (version 2 on, as
the model's training text did). Generation is a small function chosen at load time:
``transformers`` on CPU/GPU (``backend="torch"``) or a fast CPU engine from :mod:`inference.fast`;
``backend="auto"`` (the default) picks the fastest installed for this processor.

Example:
    >>> import tempfile
    >>> from training.tiny import build_tiny_summarizer
    >>> summarizer = Summarizer.from_pretrained(build_tiny_summarizer(tempfile.mkdtemp()), device="cpu")
    >>> isinstance(summarizer("تیم ملی فوتبال ایران دیشب برد.", max_new_tokens=8), str)
    True
"""

from __future__ import annotations

import copy
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from transformers import AutoModelForSeq2SeqLM, GenerationConfig

from inference.backends import ENGINE_SETTINGS, unfollowed_settings
from inference.devices import halved_while_out_of_memory
from inference.half_space import ZWNJ, repair_half_spaces
from inference.inputs import DECODING_LIMITS, check_decoding_limits, check_positive, length_sorted_batches
from inference.load_plan import LoadPlan
from inference.loading import load_weights, saved_generation_config
from inference.model_checks import decoding_problem
from inference.text_model import TextModel

logger = logging.getLogger(__name__)

# (source token ids per text, decoding settings) -> summary token ids per text, in the same order.
Generate = Callable[[list[list[int]], GenerationConfig], list[list[int]]]

# Padded source tokens per generate call on a GPU: 64 articles of 512 tokens. mT5-small's beam-4 state
# for them (encoder outputs, caches, 250k-word scores) takes a few GB; a smaller GPU splits the batch.
GPU_TOKENS_PER_BATCH = 64 * 512
# Articles per generate call on a CPU when the caller gives none: about 32 hypotheses (articles x
# beams), at most 16 articles. mT5-small sized, 32 real articles, 48 new tokens, 2 cores (AMD Zen 4),
# docs/s at 8 / 16 / 32 articles greedy and 4 / 8 / 16 with 4 beams: CTranslate2 int8 3.93 / 5.43 /
# 4.65 and 2.20 / 2.88 / 2.68; torch bf16 2.47 / 2.93 / 2.46 and 0.91 / 0.95 / 0.75 (a Xeon with AMX
# agreed: greedy 16 beat 8 by 1.25x, beam 4 8 beat 16 by 1.12x). Larger batches outgrow the caches.
HYPOTHESES_PER_CALL = 32
MAX_ARTICLES_PER_CALL = 16
_SPACE_RUN = re.compile(" {2,}")


class Summarizer(TextModel):
    """A news summarizer: ``summarize`` one text or a list; callable.

    Build it with :meth:`from_pretrained`. ``max_length`` is the source tokens the model reads;
    longer articles are truncated. ``generation_config`` holds the default decoding settings; the
    keyword ``settings`` (``max_length``, normalization, device, names) are
    :class:`~inference.text_model.TextModel`'s.

    Example:
        >>> import tempfile
        >>> from training.tiny import build_tiny_summarizer
        >>> summarizer = Summarizer.from_pretrained(build_tiny_summarizer(tempfile.mkdtemp()), device="cpu")
        >>> summarizer.max_length, summarizer.generation_config.num_beams
        (512, 4)
    """

    kind = "summarizer"

    def __init__(self, tokenizer, generate: Generate, generation_config: GenerationConfig, **settings) -> None:
        super().__init__(tokenizer, **settings)
        self.generate = generate
        self.generation_config = generation_config
        # Half-spaces the tokenizer turned into spaces are put back by the rules the training text
        # was normalized with (v2 on); a tokenizer that keeps them lets the model write its own.
        self.repairs_half_spaces = self.normalization_version >= 2 and loses_half_spaces(tokenizer)

    @classmethod
    def _from_plan(cls, plan: LoadPlan) -> Summarizer:
        """Build the summarizer ``from_pretrained`` planned: torch's ``generate`` or a fast engine's.

        A fast engine follows only the decoding settings in ``ENGINE_SETTINGS``; a call changing
        another one raises ``ValueError``.

        Example:
            >>> import tempfile
            >>> from training.tiny import build_tiny_summarizer
            >>> path = build_tiny_summarizer(tempfile.mkdtemp())
            >>> Summarizer.from_pretrained(path, device="cpu", quantize="int8").device
            device(type='cpu')
        """
        if plan.backend == "torch":
            model = load_weights(AutoModelForSeq2SeqLM, plan.source, plan.device, plan.dtype, plan.quantize)
            generate, generation_config = _torch_generate(model, plan.device, plan.tokenizer), model.generation_config
        else:
            from inference.fast import summarizer_engine

            generation_config = plan.decoding or saved_generation_config(plan.source, plan.config)
            engine = summarizer_engine(Path(plan.source), plan.backend, plan.quantize)
            generate = _engine_generate(engine, plan.backend, generation_config)
        return cls(plan.tokenizer, generate, generation_config, **plan.model_settings())

    def summarize(
        self,
        texts: str | Iterable[str],
        batch_size: int | None = None,
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        **generate_kwargs,
    ) -> str | list[str]:
        """A summary of each text: a string gives a string, a list gives a list in input order.

        ``num_beams``, ``max_new_tokens`` and other ``generate_kwargs`` (``min_new_tokens``,
        ``no_repeat_ngram_size``, ``length_penalty``, ...) override the model's saved defaults.
        ``batch_size`` counts articles per ``generate`` call (on a GPU, at least: see :func:`gpu_batching`);
        by default :meth:`batch_size_for` the decoding's beams (16 greedy, 8 with 4 beams).

        Example:
            >>> import tempfile
            >>> from training.tiny import build_tiny_summarizer
            >>> summarizer = Summarizer.from_pretrained(build_tiny_summarizer(tempfile.mkdtemp()), device="cpu")
            >>> len(summarizer(["خبر اول", "خبر دوم"], num_beams=1, max_new_tokens=4))
            2
        """
        if batch_size is not None:
            check_positive(batch_size=batch_size)
        generation = self.decoding(num_beams=num_beams, max_new_tokens=max_new_tokens, **generate_kwargs)
        batch_size = batch_size or self.batch_size_for(generation.num_beams)
        prepared, single = self.prepare(texts)
        if not prepared:
            return []
        sources = self.encode(prepared)
        summaries = [""] * len(sources)
        gpu = self.device.type == "cuda"
        rows, budget = gpu_batching(batch_size, self.max_length) if gpu else (batch_size, None)
        for batch in length_sorted_batches([len(ids) for ids in sources], rows, budget):
            outputs = self._generate_fitting([sources[i] for i in batch], generation)
            for i, ids in zip(batch, outputs, strict=True):
                summaries[i] = self._text(ids)
        return summaries[0] if single else summaries

    __call__ = summarize

    def batch_size_for(self, num_beams: int | None = None, at_most: int | None = None) -> int:
        """The fastest articles per ``generate`` call on a CPU for ``num_beams`` (the saved default when ``None``).

        About ``HYPOTHESES_PER_CALL`` hypotheses a call, at most ``MAX_ARTICLES_PER_CALL``
        articles, and at most ``at_most`` (a caller's own cap, e.g. ``khabar predict --batch-size``).
        On a GPU a caller's ``at_most`` is kept whole: there it is the floor of a token budget
        (:func:`gpu_batching`), and larger batches are what a GPU wants.

        Example:
            >>> import tempfile
            >>> from training.tiny import build_tiny_summarizer
            >>> summarizer = Summarizer.from_pretrained(build_tiny_summarizer(tempfile.mkdtemp()), device="cpu")
            >>> summarizer.batch_size_for(1), summarizer.batch_size_for(4), summarizer.batch_size_for(4, at_most=2)
            (16, 8, 2)
        """
        check_positive(
            **{name: value for name, value in (("num_beams", num_beams), ("at_most", at_most)) if value is not None}
        )
        fastest = cpu_batch_size(num_beams or self.generation_config.num_beams or 1)
        if at_most is None:
            return fastest
        return at_most if self.device.type == "cuda" else min(fastest, at_most)

    def _generate_fitting(self, sources: list[list[int]], generation: GenerationConfig) -> list[list[int]]:
        """``generate``, split in halves while a GPU runs out of memory (long beams of long articles)."""
        return halved_while_out_of_memory(
            lambda part: self.generate(part, generation), sources, list.__add__, "articles"
        )

    def _text(self, ids: list[int]) -> str:
        return tidy_summary(self.tokenizer.decode(ids, skip_special_tokens=True), self.repairs_half_spaces)

    def decoding(self, **overrides) -> GenerationConfig:
        """The model's decoding settings with ``overrides`` (those not ``None``) applied and checked.

        Example:
            >>> import tempfile
            >>> from training.tiny import build_tiny_summarizer
            >>> summarizer = Summarizer.from_pretrained(build_tiny_summarizer(tempfile.mkdtemp()), device="cpu")
            >>> summarizer.decoding(num_beams=2, max_new_tokens=None).num_beams
            2
        """
        # numpy scalars (a value taken from an array) as the Python numbers the checks and generate expect
        given = {name: _plain(value) for name, value in overrides.items() if value is not None}
        check_positive(**{name: given[name] for name in ("num_beams", "max_new_tokens") if name in given})
        check_decoding_limits(**{name: given[name] for name in DECODING_LIMITS if name in given})
        self._check_overrides(given)
        generation = copy.deepcopy(self.generation_config)
        unknown = generation.update(**given)
        if unknown:
            raise TypeError(f"unknown generation option(s): {', '.join(sorted(unknown))}")
        if generation.num_return_sequences not in (None, 1):  # one summary per text is what callers get back
            raise ValueError(f"num_return_sequences must be 1, got {generation.num_return_sequences!r}")
        return generation

    def _check_overrides(self, given: dict) -> None:
        """Refuse a decoding option of a wrong type or range, or one that changes what ``generate`` returns,
        naming it: otherwise it failed deep inside ``generate`` or an engine, or silently did nothing."""
        sampling = given.get("do_sample", self.generation_config.do_sample) is True
        problem = decoding_problem(given, sampling=sampling)
        if problem:
            raise ValueError(problem)
        for name in sorted(given):
            if (name.startswith("output_") or name == "return_dict_in_generate") and given[name]:
                raise ValueError(f"{name} is not supported: a summary is returned as text")
            if name.endswith("_token_id") and not _token_id(given[name], len(self.tokenizer)):
                raise ValueError(f"{name} must be a token id from 0 to {len(self.tokenizer) - 1}, got {given[name]!r}")

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Source token ids of each (already normalized) text, cut to ``max_length`` tokens.

        Logs at INFO, once per call, how many texts were longer and cut.

        Example:
            >>> import tempfile
            >>> from training.tiny import build_tiny_summarizer
            >>> summarizer = Summarizer.from_pretrained(build_tiny_summarizer(tempfile.mkdtemp()), device="cpu")
            >>> [len(ids) for ids in summarizer.encode(["خبر", "خبر " * 2000])]
            [2, 512]
        """
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length, return_overflowing_tokens=True)
        owners = encoded["overflow_to_sample_mapping"]
        # Overflow windows follow their text's first window; only the first one is read.
        firsts = [i for i, owner in enumerate(owners) if i == 0 or owners[i - 1] != owner]
        cut = len(texts) - sum(1 for count in Counter(owners).values() if count == 1)
        if cut:
            logger.info(
                "%d of %d texts were longer than %d tokens and were truncated", cut, len(texts), self.max_length
            )
        return [encoded["input_ids"][i] for i in firsts]

    def __repr__(self) -> str:
        return f"Summarizer({self.name!r}, max_length={self.max_length}, device={self.device})"


def tidy_summary(text: str, half_spaces: bool) -> str:
    """A decoded summary as khabar returns it: single spaces, and with ``half_spaces`` the half-space repairs.

    Training's samples and scores use it too, so they show what the trained model will answer.

    Example:
        >>> tidy_summary(" رسانه ها  می گویند ", half_spaces=True) == "رسانه\u200cها می\u200cگویند"
        True
    """
    # A lone word-start piece before another word decodes to two spaces; one is what was meant.
    text = _SPACE_RUN.sub(" ", text).strip()
    return repair_half_spaces(text) if half_spaces else text


def loses_half_spaces(tokenizer) -> bool:
    """Whether ``tokenizer`` reads a half-space (ZWNJ) as a space, as mT5's SentencePiece model does.

    Example:
        >>> import tempfile
        >>> from transformers import AutoTokenizer
        >>> from training.tiny import build_tiny_summarizer
        >>> loses_half_spaces(AutoTokenizer.from_pretrained(build_tiny_summarizer(tempfile.mkdtemp())))
        True
    """
    ids = tokenizer(_HALF_SPACE_PROBE, add_special_tokens=False).input_ids
    return ZWNJ not in tokenizer.decode(ids, skip_special_tokens=True)


_HALF_SPACE_PROBE = f"رسانه{ZWNJ}ها"


# What transformers does with a setting left unset (None in a GenerationConfig): asking for that
# value explicitly (do_sample=False) changes nothing, so a fast engine can follow it.
_UNSET_MEANS = {"do_sample": False, "repetition_penalty": 1.0, "temperature": 1.0, "top_p": 1.0, "top_k": 50}


def _same_setting(name: str, saved: object, value: object) -> bool:
    """Whether ``value`` for ``name`` decodes as the ``saved`` setting does (None is the library's default)."""
    return saved == value or (saved is None and name in _UNSET_MEANS and value == _UNSET_MEANS[name])


def _plain(value: object) -> object:
    """A numpy scalar as the Python number (or bool) it holds; anything else as it is."""
    return value.item() if type(value).__module__ == "numpy" and hasattr(value, "item") else value


def _token_id(value: object, vocabulary: int) -> bool:
    """Whether ``value`` is a token id of a vocabulary of ``vocabulary`` tokens (a list of them too)."""
    values = value if isinstance(value, list) else [value]
    return all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < vocabulary for v in values)


def cpu_batch_size(num_beams: int) -> int:
    """Articles per ``generate`` call that run fastest on a CPU: about ``HYPOTHESES_PER_CALL`` hypotheses.

    Example:
        >>> cpu_batch_size(1), cpu_batch_size(4), cpu_batch_size(64)
        (16, 8, 1)
    """
    return max(1, min(MAX_ARTICLES_PER_CALL, HYPOTHESES_PER_CALL // num_beams))


def gpu_batching(batch_size: int, max_length: int) -> tuple[int, int]:
    """Rows and padded source tokens per ``generate`` call on a GPU: up to ``GPU_TOKENS_PER_BATCH`` tokens.

    Decoding a batch takes about as long as decoding one article on a GPU, so the batch is as
    large as memory allows; ``batch_size`` (a size for a CPU) is a floor. A batch that still runs
    out of memory is split in halves.

    Example:
        >>> gpu_batching(8, 512)
        (32768, 32768)
    """
    budget = max(GPU_TOKENS_PER_BATCH, batch_size * max_length)
    return budget, budget


def _torch_generate(model, device: torch.device, tokenizer) -> Generate:
    """``model.generate`` in inference mode, on padded batches, returning token ids per text."""

    def generate(input_ids: list[list[int]], generation: GenerationConfig) -> list[list[int]]:
        batch = tokenizer.pad({"input_ids": input_ids}, return_tensors="pt").to(device)
        # Only the settings a call changed go in as arguments: transformers then checks them
        # against the saved defaults without warning about defaults the caller never touched.
        saved = model.generation_config.to_dict()
        changed = {key: value for key, value in generation.to_dict().items() if saved.get(key) != value}
        changed.pop("transformers_version", None)
        with torch.inference_mode():
            output = model.generate(**batch, **changed)
        return output.cpu().tolist()

    generate.model = model  # kept reachable for inspection and tests
    return generate


def _engine_generate(engine, backend: str, saved: GenerationConfig) -> Generate:
    """Adapt a fast engine, which takes the decoding settings as a plain dict.

    A call that changes a setting the engine cannot follow (sampling, repetition penalty, ...) is
    refused rather than silently decoded without it.
    """
    defaults = saved.to_dict()

    def generate(input_ids: list[list[int]], generation: GenerationConfig) -> list[list[int]]:
        unsupported = unfollowed_settings(
            key for key, value in generation.to_dict().items() if not _same_setting(key, defaults.get(key), value)
        )
        if unsupported:
            raise ValueError(
                f"the {backend} backend cannot apply {', '.join(unsupported)}; load the model with "
                f"backend='torch' (--backend torch) to use it"
            )
        settings = {name: getattr(generation, name, None) for name in ENGINE_SETTINGS}
        if settings["max_new_tokens"] is None:
            settings["max_new_tokens"] = generation.max_length
        return engine.generate(input_ids, settings)

    return generate
