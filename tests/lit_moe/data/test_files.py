"""Local text files are whole documents (A1): a .txt corpus equals the same texts as one JSON
document per file, validation keeps whole lines, and a short run on .txt files learns."""

from __future__ import annotations

import json
from pathlib import Path
from pydoc_data.topics import topics

import pytest
import torch

from lit_core.cli import main
from lit_core.errors import UserInputError
from lit_moe.data import LocalTextFiles
from lit_moe.data.tokenizers import ByteTokenizer
from tests.lit_moe.cli_helpers import TINY_CONFIG, read_events, small_run_args

EOS = ByteTokenizer.eos_id


def real_texts(count: int = 6, topics_per_file: int = 4) -> list[str]:
    """Multi-line English prose: entries of CPython's reference documentation, a few per file."""
    names = sorted(topics)
    return ["\n\n".join(topics[name] for name in names[i * topics_per_file:(i + 1) * topics_per_file])
            for i in range(count)]


def write_txt(folder: Path, texts: list[str], suffix: str = ".txt") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, text in enumerate(texts):
        path = folder / f"part{i:02d}{suffix}"
        path.write_bytes(text.encode("utf-8"))
        paths.append(str(path))
    return paths


def write_jsonl(path: Path, texts: list[str]) -> str:
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts), encoding="utf-8")
    return str(path)


def expected_streams(texts: list[str], val_fraction: float) -> tuple[list[int], list[int]]:
    """Written out here: each file's bytes up to its last line break before 1 - val_fraction, then
    EOS, make train; the rest of the file, then EOS, makes validation."""
    train, val = [], []
    for text in texts:
        data = text.encode("utf-8")
        cut = text.rfind("\n", 0, int(len(text) * (1 - val_fraction))) + 1
        head, tail = text[:cut].encode("utf-8"), text[cut:].encode("utf-8")
        assert head + tail == data and head.endswith(b"\n")
        train += list(head) + [EOS]
        val += list(tail) + [EOS]
    return train, val


def test_txt_files_and_one_json_document_per_file_give_the_same_tokens(tmp_path):
    texts = real_texts()
    assert all(text.count("\n") > 50 for text in texts)
    as_txt = LocalTextFiles(train_files=write_txt(tmp_path / "txt", texts), seq_len=64)
    as_md = LocalTextFiles(train_files=write_txt(tmp_path / "md", texts, ".md"), seq_len=64)
    as_jsonl = LocalTextFiles(train_files=[write_jsonl(tmp_path / "corpus.jsonl", texts)], seq_len=64)
    txt_train, txt_val = as_txt.token_streams()
    json_train, json_val = as_jsonl.token_streams()
    md_train, md_val = as_md.token_streams()
    assert torch.equal(txt_train, json_train) and torch.equal(txt_val, json_val)
    assert torch.equal(txt_train, md_train) and torch.equal(txt_val, md_val)
    expected_train, expected_val = expected_streams(texts, 0.1)
    assert txt_train.tolist() == expected_train and txt_val.tolist() == expected_val
    assert int((txt_train == EOS).sum()) == len(texts)  # one document per file, not one per line


def test_separate_validation_files_are_whole_documents_too(tmp_path):
    texts = real_texts(count=4)
    txt = LocalTextFiles(train_files=write_txt(tmp_path / "t", texts[:3]),
                         val_files=write_txt(tmp_path / "v", texts[3:]))
    jsonl = LocalTextFiles(train_files=[write_jsonl(tmp_path / "train.jsonl", texts[:3])],
                           val_files=[write_jsonl(tmp_path / "val.jsonl", texts[3:])])
    (txt_train, txt_val), (json_train, json_val) = txt.token_streams(), jsonl.token_streams()
    assert torch.equal(txt_train, json_train) and torch.equal(txt_val, json_val)
    assert txt_val.tolist() == list(texts[3].encode("utf-8")) + [EOS]


def test_paragraph_and_line_documents_hold_out_whole_documents(tmp_path):
    text = "First paragraph, line one.\nLine two.\n\n\nSecond paragraph.\n  \nThird one\nends here.\n"
    paths = write_txt(tmp_path, [text, text.upper()])
    paragraphs = LocalTextFiles(train_files=paths, text_documents="paragraph", val_fraction=0.3)
    train, val = paragraphs.documents
    assert train == ["First paragraph, line one.\nLine two.", "Second paragraph.",
                     "FIRST PARAGRAPH, LINE ONE.\nLINE TWO.", "SECOND PARAGRAPH."]
    assert val == ["Third one\nends here.", "THIRD ONE\nENDS HERE."]
    lines = LocalTextFiles(train_files=paths[:1], text_documents="line", val_fraction=0.25)
    assert lines.documents == (["First paragraph, line one.", "Line two.", "Second paragraph.", "Third one"],
                               ["ends here."])
    stream, _ = lines.token_streams()
    assert int((stream == EOS).sum()) == 4


@pytest.mark.parametrize("content, message", [(b"", "is empty"), (b"\n \n", "has no text"),
                                              (b"PK\x03\x04\x00\x00binary", "looks binary"),
                                              (b"caf\xe9 latin-1\n", "not UTF-8")])
def test_unusable_text_files_are_named(tmp_path, content, message):
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("some text\n" * 10)
    bad.write_bytes(content)
    with pytest.raises(UserInputError, match=message) as error:
        _ = LocalTextFiles(train_files=[str(good), str(bad)]).documents
    assert str(bad) in str(error.value)


def test_validation_loss_falls_on_txt_files(tmp_path):
    names = sorted(topics)
    texts = ["\n\n".join(topics[n] for n in names[i::8]) for i in range(8)]  # all 79 topics, 8 files
    files = write_txt(tmp_path / "corpus", texts)
    cli = main(["fit", "--config", TINY_CONFIG,
                *small_run_args(tmp_path, max_steps=40, **{"trainer.val_check_interval": "10",
                                                           "trainer.limit_val_batches": "4",
                                                           "model.init_args.learning_rate": "0.005"}),
                "--data", "lit_moe.data.LocalTextFiles", "--data.train_files", json.dumps(files)])
    assert cli.datamodule.text_documents == "file"
    val = [e.value for e in read_events(cli.trainer.logger.log_dir).Scalars("val/loss")]
    assert len(val) == 4
    # whole-document validation text: val loss falls with train loss (per-line splitting made it rise)
    assert val[-1] < val[0] - 0.2 and val[-1] == min(val), val


def test_a_malformed_json_lines_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "corpus.jsonl"
    bad.write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(UserInputError, match=r"could not read json file\(s\) .*corpus.jsonl.*: JSON parse error"):
        _ = LocalTextFiles(train_files=[str(bad)]).documents
