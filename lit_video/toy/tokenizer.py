"""A word-level tokenizer over the toy world's words, built offline (no download, no merges file)."""

from __future__ import annotations

from lit_video.toy.world import words

BOS, EOS, UNK = "<|startoftext|>", "<|endoftext|>", "<unk>"


def toy_tokenizer(max_length: int = 8):
    """A ``PreTrainedTokenizerFast`` (WordLevel, lower-cased, split on whitespace): one id per toy word,
    ``<|startoftext|> … <|endoftext|>`` around every prompt, padded with ``<|endoftext|>``.
    ``save_pretrained`` writes a folder that ``AutoTokenizer.from_pretrained`` reads back offline."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors  # noqa: PLC0415 (heavy: imported when used)
    from tokenizers.models import WordLevel  # noqa: PLC0415 (heavy: imported when used)
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415 (heavy: imported when used)

    vocab = {token: index for index, token in enumerate([EOS, BOS, UNK, *words()])}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=EOS,
                                   unk_token=UNK, model_max_length=max_length)
