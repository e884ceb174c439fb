"""Data: the built-in corpus split, packing, file formats, tokenizers, the hub stream."""

from __future__ import annotations

import json

import pytest
import torch

import lit_moe
from lit_core.errors import UserInputError
from lit_moe.data import BuiltinText, HubTextStream, LocalTextFiles, TextDataModule
from lit_moe.data.corpus import builtin_documents, split_document, split_documents
from lit_moe.data.packing import PackedSequences, StreamingPackedSequences, pack_documents
from lit_moe.data.tokenizers import ByteTokenizer


def test_builtin_split_is_deterministic_and_disjoint():
    documents = builtin_documents(["docs"])
    assert len(documents) >= 70 and sum(map(len, documents)) > 300_000
    train_a, val_a = split_documents(documents, 0.1)
    train_b, val_b = split_documents(builtin_documents(["docs"]), 0.1)
    assert train_a == train_b and val_a == val_b
    val_chars = sum(map(len, val_a))
    assert 0.07 < val_chars / sum(map(len, documents)) < 0.13
    for document, train_part in zip(documents[:10], train_a[:10]):
        assert document.startswith(train_part)


def test_code_domain_is_python_source():
    code = builtin_documents(["code"])
    assert len(code) > 50
    assert sum("def " in doc for doc in code) > 40


def test_packing_windows_shift_by_one():
    stream = pack_documents([[1, 2, 3], [4, 5]], eos_id=9)
    assert stream.tolist() == [1, 2, 3, 9, 4, 5, 9]
    dataset = PackedSequences(stream, seq_len=3)
    assert len(dataset) == 2
    inputs, targets = dataset[1]
    assert inputs.tolist() == [9, 4, 5] and targets.tolist() == [4, 5, 9]


def test_streaming_packing_matches_in_memory_packing():
    texts = ["hello world", "second document here", "3rd"] * 5
    tokenizer = ByteTokenizer()
    in_memory = PackedSequences(pack_documents(tokenizer.encode_batch(texts), tokenizer.eos_id), seq_len=8)
    streaming = StreamingPackedSequences(lambda rank, world: iter(texts), tokenizer.encode_batch, tokenizer.eos_id,
                                         seq_len=8, docs_per_batch=4)
    streamed = list(streaming)
    assert len(streamed) == len(in_memory)
    for (a, b), (c, d) in zip(streamed, (in_memory[i] for i in range(len(in_memory)))):
        assert torch.equal(a, c) and torch.equal(b, d)


def test_builtin_datamodule_batches():
    data = BuiltinText(seq_len=32, batch_size=4)
    data.setup("fit")
    inputs, targets = next(iter(data.train_dataloader()))
    assert inputs.shape == (4, 32) and targets.shape == (4, 32)
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    assert int(inputs.max()) < data.vocab_size == 257
    assert len(data.val_dataset) > 100


@pytest.mark.parametrize("fmt", ["text", "json", "parquet"])
def test_local_file_formats(tmp_path, fmt):
    documents = [f"document number {i} " * 20 + "\n" + f"second line of {i}\n" for i in range(12)]
    if fmt == "text":  # one file per document
        paths = []
        for i, document in enumerate(documents):
            paths.append(tmp_path / f"doc{i}.txt")
            paths[-1].write_text(document)
    elif fmt == "json":
        paths = [tmp_path / "corpus.jsonl"]
        paths[0].write_text("\n".join(json.dumps({"content": d}) for d in documents))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        paths = [tmp_path / "corpus.parquet"]
        pq.write_table(pa.table({"content": documents}), paths[0])
    data = LocalTextFiles(train_files=[str(p) for p in paths], text_field="content", seq_len=16, batch_size=2)
    data.setup("fit")
    train, val = data.token_streams()
    eos = ByteTokenizer.eos_id
    # Every document: its first line to train, its last (whole) line to validation, one EOS after each part.
    assert int((train == eos).sum()) == 12 and int((val == eos).sum()) == 12
    decoded = ByteTokenizer().decode(val.tolist())
    assert decoded == "".join(f"second line of {i}\n" for i in range(12))
    assert len(data.train_dataset) > 10 and len(data.val_dataset) >= 1


def test_split_never_cuts_a_line():
    assert split_document("first line\nsecond line\n", 0.1) == ("first line\n", "second line\n")
    assert split_document("one single line without a break", 0.5) == ("one single line without a break", "")
    # The cut point lies in the first line: the first line break after it is used.
    assert split_document("a long first line here\nb\n", 0.9) == ("a long first line here\n", "b\n")


def test_deprecated_factory_builds_the_new_classes():
    with pytest.warns(DeprecationWarning, match="BuiltinText"):
        data = TextDataModule(source="builtin", seq_len=32)
    assert isinstance(data, BuiltinText) and lit_moe.TextDataModule is TextDataModule
    assert lit_moe.LocalTextFiles is LocalTextFiles and lit_moe.HubTextStream is HubTextStream


def test_bpe_tokenizer_is_trained_once_and_cached(tmp_path):
    data = BuiltinText(tokenizer="bpe", bpe_vocab_size=512, cache_dir=str(tmp_path), seq_len=32)
    assert data.vocab_size == 512
    cached = list(tmp_path.glob("bpe-512-*.json"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    again = BuiltinText(tokenizer="bpe", bpe_vocab_size=512, cache_dir=str(tmp_path), seq_len=32)
    assert again.vocab_size == 512 and cached[0].stat().st_mtime_ns == mtime
    ids = again.tokenizer.encode_batch(["def function(argument):"])[0]
    assert len(ids) < len("def function(argument):")  # merges compress
    # A folder holding that tokenizer.json is accepted as a local HF tokenizer.
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes(cached[0].read_bytes())
    local = BuiltinText(tokenizer=str(folder), seq_len=32)
    assert local.vocab_size == 512
    assert local.tokenizer.encode_batch(["def function(argument):"])[0] == ids


def test_file_format_must_be_inferable(tmp_path):
    path = tmp_path / "corpus.dat"
    path.write_text("x")
    with pytest.raises(UserInputError, match="file_format"):
        LocalTextFiles(train_files=[str(path)])


def test_hub_source_fails_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = HubTextStream(hub_path="HuggingFaceFW/fineweb-edu", hub_name="sample-10BT", seq_len=16)
    data.setup("fit")
    with pytest.raises(UserInputError, match="network"):
        next(iter(data.train_dataloader()))


def test_hub_stream_refuses_a_bpe_it_cannot_train():
    with pytest.raises(UserInputError, match="bpe"):
        HubTextStream(hub_path="HuggingFaceFW/fineweb-edu", tokenizer="bpe")
