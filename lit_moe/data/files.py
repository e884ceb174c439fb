"""Local text, JSON-lines or parquet files as packed language-modelling batches.

A text file (``.txt``, ``.text``, ``.md``) is ONE document by default, newlines kept, so packing puts
one end-of-document token after each file and the validation split cuts each file at a line boundary
(never inside a line); ``text_documents: paragraph | line`` cuts files into blank-line-separated
paragraphs or single lines instead (then whole documents are held out). A JSON/parquet row is one
document. A ``.txt`` corpus and the same texts as one JSON document per file give the same tokens.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Optional

from lit_core.errors import UserInputError
from lit_moe.data.base import PackedTextDataModule
from lit_moe.data.corpus import hold_out_documents, split_documents

FILE_FORMATS = {".txt": "text", ".text": "text", ".md": "text", ".json": "json", ".jsonl": "json",
                ".parquet": "parquet"}
PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
SNIFF_BYTES = 1 << 16


def infer_format(files: list[str]) -> str:
    formats = {FILE_FORMATS.get(Path(f).suffix.lower()) for f in files}
    if None in formats or len(formats) != 1:
        raise UserInputError(
            f"cannot infer the file format of {files}: use one of {sorted(FILE_FORMATS)} extensions for all "
            "files, or set data.file_format to text, json or parquet")
    return formats.pop()


def check_data_file(path: Path, file_format: str) -> None:
    """Cheap checks before any work: the file exists, is not empty and (text/json) is not binary."""
    if not path.is_file():
        raise UserInputError(f"data file(s) not found: ['{path}']. Check the paths in data.train_files / "
                             "data.val_files")
    if path.stat().st_size == 0:
        raise UserInputError(f"data file {path} is empty: add text to it or remove it from data.train_files / "
                             "data.val_files")
    if file_format != "parquet":
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
        if b"\x00" in head:
            raise UserInputError(f"data file {path} looks binary (it contains NUL bytes), not {file_format} text: "
                                 "pass UTF-8 text, JSON lines or parquet files")


def read_text_file(path: Path) -> str:
    """The whole file as text, byte for byte (no newline translation; a UTF-8 BOM is dropped)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserInputError(f"data file {path} is not UTF-8 text (undecodable byte at offset {error.start}): "
                             "convert it to UTF-8 or remove it") from None
    if not text.strip():
        raise UserInputError(f"data file {path} has no text (only whitespace): add text to it or remove it")
    return text


def cut_text(text: str, text_documents: str) -> list[str]:
    """One text file's documents: the file, its paragraphs or its non-empty lines."""
    if text_documents == "file":
        return [text]
    if text_documents == "paragraph":
        return [p for p in (part.strip("\n") for part in PARAGRAPH_BREAK.split(text)) if p.strip()]
    return [line for line in text.splitlines() if line.strip()]


class LocalTextFiles(PackedTextDataModule):
    """Local files, each document followed by an end-of-document token.

    Args:
        train_files: Training files (text, JSON lines or parquet; all of one format).
        val_files: Validation files; if omitted, the training documents are split by ``val_fraction``.
        file_format: ``text``, ``json`` (JSON lines) or ``parquet``; inferred from the extension if omitted.
        text_field: Column holding the text in json/parquet files (one row = one document).
        text_documents: What a document is in a text file: ``file`` (the whole file, newlines kept),
            ``paragraph`` (blocks separated by blank lines) or ``line`` (every non-empty line).
        val_fraction: Without ``val_files``: share held out for validation, cut at a line boundary of
            every document (``file`` documents and json/parquet rows), or as whole documents (the
            last ones of each file, for ``paragraph`` / ``line``).
        **kwargs: Tokenizer, packing and loader arguments of ``PackedTextDataModule``.
    """

    def __init__(
        self,
        train_files: list[str],
        val_files: Optional[list[str]] = None,
        file_format: Optional[Literal["text", "json", "parquet"]] = None,
        text_field: str = "text",
        text_documents: Literal["file", "paragraph", "line"] = "file",
        val_fraction: float = 0.1,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not train_files:
            raise UserInputError("data.train_files is empty: list your text/jsonl/parquet files")
        if not 0.0 < val_fraction < 1.0:
            raise UserInputError(f"data.val_fraction={val_fraction} must lie strictly between 0 and 1")
        self.train_files = [str(Path(f).expanduser()) for f in train_files]
        self.val_files = [str(Path(f).expanduser()) for f in val_files or []]
        missing = [f for f in self.train_files + self.val_files if not Path(f).is_file()]
        if missing:
            raise UserInputError(f"data file(s) not found: {missing}. Check the paths in data.train_files / "
                                 "data.val_files")
        self.file_format = file_format or infer_format(self.train_files + self.val_files)
        self.text_field = text_field
        self.text_documents = text_documents
        self.val_fraction = val_fraction
        for path in self.train_files + self.val_files:
            check_data_file(Path(path), self.file_format)

    def describe_source(self) -> str:
        return f"files {self.train_files}"

    def load_documents(self) -> tuple[list[str], list[str]]:
        if self.val_files:
            return self._documents_of(self.train_files), self._documents_of(self.val_files)
        if self.file_format == "text" and self.text_documents != "file":
            train, val = [], []
            for path in self.train_files:  # each file keeps its first documents for train
                file_train, file_val = hold_out_documents(cut_text(read_text_file(Path(path)), self.text_documents),
                                                          self.val_fraction)
                train += file_train
                val += file_val
            return train, val
        return split_documents(self._documents_of(self.train_files), self.val_fraction)

    def _documents_of(self, files: list[str]) -> list[str]:
        if self.file_format == "text":
            return [doc for path in files for doc in cut_text(read_text_file(Path(path)), self.text_documents)]
        return self._rows_of(files)

    def _rows_of(self, files: list[str]) -> list[str]:
        from datasets import load_dataset  # noqa: PLC0415 (slow import, only for json/parquet)
        from datasets.exceptions import DatasetsError  # noqa: PLC0415

        try:
            dataset = load_dataset(self.file_format, data_files=files, split="train")
        except (DatasetsError, ValueError, OSError) as error:  # pyarrow's parse errors are ValueErrors
            while error.__cause__ is not None:  # datasets wraps the parser's own message
                error = error.__cause__
            lines = str(error).strip().splitlines()
            raise UserInputError(f"could not read {self.file_format} file(s) {files}: "
                                 f"{lines[-1] if lines else type(error).__name__}") from None
        if self.text_field not in dataset.column_names:
            raise UserInputError(f"column '{self.text_field}' not in {files} (columns: {dataset.column_names}); "
                                 "set data.text_field")
        return [text for text in dataset[self.text_field] if text and text.strip()]
