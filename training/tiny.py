"""Build tiny random-weight models that run offline, for tests, the demo and quick experiments.

Real users start from ``HooshvareLab/bert-fa-base-uncased`` and ``google/mt5-small``, but the
hub is not always reachable. These builders make the same architectures at toy size, with
tokenizers trained on the bundled sample, in a few seconds:

* a BERT sequence classifier (2 layers, hidden 64) with a WordPiece tokenizer;
* an mT5 model (2 + 2 layers, d_model 64) with a SentencePiece Unigram tokenizer that normalizes
  text as mT5's does (a half-space reads as a space).

The tokenizers are learned by ``sentencepiece`` on one thread with a fixed seed and the weights
drawn with a fixed seed, so the same sample always gives the same models.

Both are plain ``save_pretrained`` directories that ``transformers`` Auto classes load.

Run ``khabar-train tiny-models`` (or ``make tiny-models``) to write them to ``models/tiny/``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    GenerationConfig,
    MT5Config,
    MT5ForConditionalGeneration,
    T5TokenizerFast,
)

from inference.normalize import normalize, save_normalization
from training.config import ExperimentConfig, GenerationSettings, load_config
from training.distributed import world_size
from training.final_dir import readable_as_umask_allows
from training.output_dir import is_previous_run

SAMPLE_TRAIN = Path(__file__).resolve().parent.parent / "data" / "sample" / "train.jsonl"
CONFIGS = Path(__file__).resolve().parent.parent / "configs"
TINY_DIR = Path("models/tiny")
SEED = 0
log = logging.getLogger(__name__)


def sample_texts(path: Path = SAMPLE_TRAIN) -> list[str]:
    """Normalized articles, titles and leads of the bundled sample: the tokenizers' training text.

    Example:
        >>> len(sample_texts()) > 500
        True
    """
    texts = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            texts += [normalize(row[key]) for key in ("article", "title", "summary") if row.get(key)]
    return texts


def sample_labels(path: Path = SAMPLE_TRAIN) -> list[str]:
    """The sorted topic labels of the bundled sample.

    Example:
        >>> "sports" in sample_labels()
        True
    """
    with path.open(encoding="utf-8") as f:
        return sorted({json.loads(line)["category"] for line in f})


def train_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int = 4000) -> BertTokenizerFast:
    """Train a BERT WordPiece tokenizer (uncased, accents kept: Persian has no case to fold).

    The same texts always give the same vocabulary, so tiny models, the tests on them and the demo
    are reproducible (the ``tokenizers`` trainers iterate hash maps seeded per process).

    Example:
        >>> tok = train_wordpiece_tokenizer(["سلام دنیا"] * 10, vocab_size=100)
        >>> tok.decode(tok("سلام").input_ids, skip_special_tokens=True)
        'سلام'
    """
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False, clean_text=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # BPE pieces learned on the pre-split words: a piece starting a word is a WordPiece word, any other
    # continues one ("##"), and every character is kept both ways so no word becomes [UNK].
    words = [" ".join(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(t))) for t in texts]
    learned = _sentencepiece(words, vocab_size, "bpe", "identity").pieces
    # sentencepiece's own <pad>, </s>, <unk> are control pieces: BERT has its specials above.
    pieces = [piece.piece for piece in learned if piece.type == piece.NORMAL]
    chars = sorted({char for line in words for char in line if not char.isspace()})
    vocab = specials + [p[1:] if p.startswith(_WORD_START) else f"##{p}" for p in pieces if p != _WORD_START]
    vocab += chars + [f"##{char}" for char in chars]
    tok = Tokenizer(models.WordPiece(dict(map(reversed, enumerate(dict.fromkeys(vocab)))), unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre_tokenizer, decoders.WordPiece()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        do_lower_case=True,
        model_max_length=512,
    )


def train_unigram_tokenizer(texts: Iterable[str], vocab_size: int = 4000) -> T5TokenizerFast:
    """Train a SentencePiece Unigram tokenizer laid out like mT5's (pad 0, eos 1, unk 2).

    Trained by ``sentencepiece`` itself, as mT5's was, with mT5's normalization (``nmt_nfkc``,
    which reads a half-space as a space), on one thread with a fixed seed: the same texts always
    give the same vocabulary.

    Example:
        >>> tok = train_unigram_tokenizer(["سلام دنیا"] * 10, vocab_size=30)
        >>> tok.pad_token_id, tok.eos_token_id
        (0, 1)
    """
    model = _sentencepiece(list(texts), vocab_size, "unigram", "nmt_nfkc")
    tok = Tokenizer(models.Unigram([(piece.piece, piece.score) for piece in model.pieces], unk_id=2))
    # Laid out as transformers rebuilds a T5 tokenizer when it loads one: its normalization table
    # survives the reload (other normalizers are dropped), and runs of spaces split no word.
    tok.normalizer = normalizers.Precompiled(model.normalizer_spec.precompiled_charsmap)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement=_WORD_START, prepend_scheme="always")]
    )
    tok.decoder = decoders.Metaspace(replacement=_WORD_START, prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=tok,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
        model_max_length=512,
    )


_WORD_START = "▁"  # SentencePiece's mark for a piece that begins a word


def _sentencepiece(texts: list[str], vocab_size: int, kind: str, normalization: str):
    """The ``sentencepiece`` model (a ``ModelProto``) learned from ``texts``: ``<pad>``, ``</s>``, ``<unk>`` first."""
    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2

    written = io.BytesIO()
    sentencepiece.set_random_generator_seed(SEED)
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=written,
        model_type=kind,
        vocab_size=vocab_size,
        hard_vocab_limit=False,  # a small corpus yields fewer pieces rather than an error
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        normalization_rule_name=normalization,
        max_sentence_length=1 << 20,  # whole articles, not only the short ones
        num_threads=1,  # reproducible
        minloglevel=2,
    )
    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(written.getvalue())
    return model


def build_tiny_classifier(
    out_dir: str | Path, labels: Sequence[str] | None = None, texts: Sequence[str] | None = None
) -> Path:
    """Write a tiny BERT topic classifier with random weights to ``out_dir``.

    Example:
        >>> import tempfile
        >>> from transformers import AutoModelForSequenceClassification
        >>> path = build_tiny_classifier(tempfile.mkdtemp())
        >>> AutoModelForSequenceClassification.from_pretrained(path).config.num_hidden_layers
        2
    """
    out = Path(out_dir)
    labels = list(labels or sample_labels())
    tokenizer = train_wordpiece_tokenizer(texts or sample_texts())
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    _seed()
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    save_normalization(out)
    readable_as_umask_allows(out)
    return out


def build_tiny_summarizer(out_dir: str | Path, texts: Sequence[str] | None = None) -> Path:
    """Write a tiny mT5 summarizer with random weights and the shipped decoding settings to ``out_dir``.

    Example:
        >>> import tempfile
        >>> from transformers import AutoModelForSeq2SeqLM
        >>> path = build_tiny_summarizer(tempfile.mkdtemp())
        >>> AutoModelForSeq2SeqLM.from_pretrained(path).generation_config.num_beams
        4
    """
    out = Path(out_dir)
    tokenizer = train_unigram_tokenizer(texts or sample_texts())
    config = MT5Config(
        vocab_size=len(tokenizer),
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    _seed()
    model = MT5ForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=tokenizer.pad_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        # The shipped decoding settings, with summaries kept short on a model this small.
        **GenerationSettings(max_new_tokens=64).decoding(),
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    save_normalization(out)
    readable_as_umask_allows(out)
    return out


TINY_BUILDERS = {"classifier": build_tiny_classifier, "summarizer": build_tiny_summarizer}


def _seed() -> None:
    import torch

    torch.manual_seed(SEED)


def tiny_config(model: str, *overrides: str) -> ExperimentConfig:
    """``configs/<model>/tiny.yaml`` starting from a fresh tiny ``classifier`` or ``summarizer`` in a temp folder,
    writing there too; for examples and quick runs. ``overrides`` are ``key=value`` and win.

    Example:
        >>> tiny_config("classifier", "train.max_steps=2").train.max_steps
        2
    """
    work = Path(tempfile.mkdtemp(prefix=f"khabar-tiny-{model}-"))
    start = TINY_BUILDERS[model](work / "start")
    config = CONFIGS / model / "tiny.yaml"
    return load_config(config, [f"model.name_or_path={start}", f"output_dir={work / 'model'}", *overrides])


def ensure_tiny_models(cfg: ExperimentConfig) -> None:
    """Build a missing ``models/tiny/classifier`` or ``models/tiny/summarizer`` that ``cfg`` starts from.

    So ``khabar-train configs/classifier/tiny.yaml`` works on a fresh clone without ``make tiny-models``
    first; any other missing path is left for the loader to report.

    Example:
        >>> import os, tempfile
        >>> from training.config import load_config
        >>> cfg = load_config("configs/classifier/tiny.yaml")
        >>> here = os.getcwd(); os.chdir(tempfile.mkdtemp())
        >>> ensure_tiny_models(cfg)
        >>> Path("models/tiny/classifier/config.json").is_file(), Path("models/tiny/summarizer").exists()
        (True, False)
        >>> os.chdir(here)
    """
    if world_size() > 1:  # several processes would build the same folder at once; make tiny-models first
        return
    for source in (cfg.model.name_or_path, cfg.model.config, cfg.model.tokenizer):
        path = Path(source) if source else None
        if path is None or path.exists() or path.parent != TINY_DIR or path.name not in TINY_BUILDERS:
            continue
        log.info(
            "%s is missing: building the tiny %s from the bundled sample (as make tiny-models does)", path, path.name
        )
        TINY_BUILDERS[path.name](path)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``khabar-train tiny-models`` flags, added to ``parser``.

    Example:
        >>> add_arguments(argparse.ArgumentParser()).parse_args([]).out
        PosixPath('models/tiny')
    """
    parser.add_argument("--out", type=Path, default=TINY_DIR, help="folder to write classifier/ and summarizer/ into")
    return parser


def run(args: argparse.Namespace) -> int:
    """Build both tiny models from the bundled sample into ``args.out``; returns the exit code.

    A folder that holds anything but an earlier tiny model (a trained model, say) is refused, before either is built.
    """
    for kind in TINY_BUILDERS:
        problem = _not_replaceable(args.out / kind)
        if problem:
            print(f"khabar-train tiny-models: error: --out {args.out}: {problem}; pick another --out", file=sys.stderr)
            return 2
    texts = sample_texts()
    classifier = build_tiny_classifier(args.out / "classifier", texts=texts)
    summarizer = build_tiny_summarizer(args.out / "summarizer", texts=texts)
    print(f"tiny models written to {classifier} and {summarizer}")
    return 0


def _not_replaceable(folder: Path) -> str | None:
    """Why building a tiny model into ``folder`` would destroy something; None for a new, empty or tiny one."""
    if folder.exists() and not folder.is_dir():
        return f"{folder} is a file"
    if not folder.is_dir() or not any(folder.iterdir()):
        return None
    if is_previous_run(folder) or _full_size_weights(folder):
        return f"{folder} holds a trained model, whose weights would be replaced by random ones"
    if not (folder / "config.json").is_file():
        return f"{folder} holds files that are not a model"
    return None


# A tiny model's weights take about 2 MB; a downloaded or trained real one, hundreds.
_TINY_WEIGHTS_AT_MOST = 20 << 20


def _full_size_weights(folder: Path) -> bool:
    """Whether ``folder`` holds weights too large for a tiny model (a hub download, say, without khabar's run files)."""
    weights = [*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")]
    return any(path.stat().st_size > _TINY_WEIGHTS_AT_MOST for path in weights)


def main(argv: list[str] | None = None) -> int:
    """``khabar-train tiny-models [--out DIR]``: build both tiny models from the bundled sample."""
    parser = argparse.ArgumentParser(prog="khabar-train tiny-models", description=__doc__.split("\n\n")[0])
    return run(add_arguments(parser).parse_args(argv))
