"""The built-in corpus: text that ships with CPython, so training needs no download.

- ``docs``: the Python reference documentation (``pydoc_data.topics``, ~465k characters of prose).
- ``code``: the standard library's own ``.py`` sources (a second, "code" domain).

The train/validation split is deterministic: every document contributes its first
``1 - val_fraction`` (cut at a line boundary, never inside a line) to train and the rest to
validation, so both splits cover every topic.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

from lit_core.errors import UserInputError

BUILTIN_DOMAINS = ("docs", "code")


def python_docs_documents() -> list[str]:
    from pydoc_data.topics import topics  # noqa: PLC0415 (465k characters, loaded only when used)

    return [topics[name] for name in sorted(topics)]


def stdlib_code_documents(max_chars: int = 2_000_000) -> list[str]:
    """Standard-library sources (tests, vendored and site-packages excluded), up to ``max_chars``."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip_parts = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "_vendor"}
    documents, total = [], 0
    for path in sorted(stdlib.rglob("*.py")):
        if skip_parts.intersection(path.relative_to(stdlib).parts):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if total + len(text) > max_chars:
            break
        documents.append(text)
        total += len(text)
    return documents


def split_document(text: str, val_fraction: float) -> tuple[str, str]:
    """Cut one document into (train, val) at the line boundary nearest ``1 - val_fraction``: the last
    line break before that point, else the first one after it; a one-line document stays whole in
    train (a split never cuts a line)."""
    cut = int(len(text) * (1.0 - val_fraction))
    newline = text.rfind("\n", 0, cut)
    if newline < 0:
        newline = text.find("\n", cut)
    if newline < 0:
        return text, ""
    return text[: newline + 1], text[newline + 1 :]


def split_documents(documents: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Split every document at a line boundary (both splits cover every document)."""
    train, val = [], []
    for document in documents:
        train_part, val_part = split_document(document, val_fraction)
        if train_part.strip():
            train.append(train_part)
        if val_part.strip():
            val.append(val_part)
    return train, val


def hold_out_documents(documents: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Whole documents (paragraphs, lines): the last ``val_fraction`` of them (at least one, if there
    are two or more) go to validation, the rest to train."""
    held_out = min(max(round(len(documents) * val_fraction), 1), len(documents) - 1) if len(documents) > 1 else 0
    cut = len(documents) - held_out
    return documents[:cut], documents[cut:]


def builtin_documents(domains: list[str], load: bool = True) -> list[str]:
    """The documents of the built-in ``domains`` (only checks the names when ``load`` is false)."""
    unknown = sorted(set(domains) - set(BUILTIN_DOMAINS))
    if unknown:
        raise UserInputError(f"unknown built-in domain(s) {unknown}; choose from {list(BUILTIN_DOMAINS)}")
    if not load:
        return []
    documents: list[str] = []
    if "docs" in domains:
        documents += python_docs_documents()
    if "code" in domains:
        documents += stdlib_code_documents()
    return documents
