"""Named domains: built-in held-out text and user files, a fixed token budget each, clear errors."""

from __future__ import annotations

import pytest
import torch

from lit_moe.analysis.domains import DomainDataModule
from lit_moe.data.corpus import python_docs_documents
from lit_moe.errors import UserInputError


@pytest.fixture()
def prose_files(tmp_path):
    documents = python_docs_documents()
    paths = []
    for index, text in enumerate(documents[:6]):
        path = tmp_path / f"doc{index}.txt"
        path.write_text(text)
        paths.append(str(path))
    return paths, documents[:6]


def test_user_and_builtin_domains_get_the_same_budget_of_real_tokens(prose_files):
    paths, documents = prose_files
    data = DomainDataModule(builtin=["code"], files={"english": paths}, tokens_per_domain=40 * 16, seq_len=16,
                            batch_size=7)
    assert data.domain_names == ["code", "english"]
    sequences = data.sequences
    assert {name: tuple(s.shape) for name, s in sequences.items()} == {"code": (40, 17), "english": (40, 17)}
    stream = []
    for text in documents:
        stream += list(text.encode("utf-8")) + [256]
    stream_T = torch.tensor(stream)
    first, last = sequences["english"][0], sequences["english"][-1]
    assert torch.equal(first, stream_T[:17])  # windows spread from the start to the end of the domain
    available = (len(stream) - 1) // 16
    assert torch.equal(last, stream_T[(available - 1) * 16 : (available - 1) * 16 + 17])
    loaders = data.test_dataloader()
    assert [len(loader) for loader in loaders] == [6, 6]  # ceil(40 / 7) batches per domain
    assert len(data.predict_dataloader().dataset) == 80


def test_bad_domains_fail_with_a_clear_message(prose_files, tmp_path):
    paths, _ = prose_files
    with pytest.raises(UserInputError, match="unknown built-in domain"):
        DomainDataModule(builtin=["french"])
    with pytest.raises(UserInputError, match="not found"):
        DomainDataModule(builtin=[], files={"mine": [str(tmp_path / "missing.txt")]}).sequences  # noqa: B018
    with pytest.raises(UserInputError, match="fewer than tokens_per_domain"):
        DomainDataModule(builtin=[], files={"tiny": paths[:1]}, tokens_per_domain=10**7).sequences  # noqa: B018
    with pytest.raises(UserInputError, match="both built-in and user"):
        DomainDataModule(builtin=["docs"], files={"docs": paths})
