"""Corpora: the shipped offline sources, local files, packing into token rows, cache ids."""

import glob
import json
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from interp import corpus
from interp.errors import InterpError


def test_shipped_sources_against_their_packages():
    # Independent counts straight from the package files.
    bbc = glob.glob(str(corpus._package_dir(corpus.SOURCES["bbc-news"]) / "bbcnews/data/*/*.txt"))
    db = corpus._package_dir(corpus.SOURCES["kjv"]) / "DATA/Bible.db"
    chapters = sqlite3.connect(db).execute(
        "SELECT COUNT(*) FROM (SELECT DISTINCT TestamentID, BookID, ChapterID FROM Bible)").fetchone()[0]
    assert len(list(corpus.documents("bbc-news"))) == len(bbc) == 2225
    kjv = list(corpus.documents("kjv"))
    assert len(kjv) == chapters == 1189
    assert kjv[0].startswith("In the beginning God created the heaven")  # verse numbers stripped
    wn = list(corpus.documents("wordnet"))
    assert sum(d.count("\n") + 1 for d in wn) == 117_659  # WordNet 3.0 has 117,659 synsets
    assert any(line.startswith("dog, domestic dog, Canis familiaris:") for d in wn for line in d.split("\n"))


def test_default_mixes_all_sources_in_a_fixed_order():
    first = list(corpus.documents())
    assert len(first) == 2225 + 1189 + 2943
    assert first[:50] == list(corpus.documents())[:50]
    head = first[:300]  # a prefix of the default is varied, not one source
    assert any("\n\n" in d for d in head) and any(": " in d.split("\n")[0] and "\n\n" not in d for d in head)


def test_token_rows_pack_documents_with_eos(tiny_models, tmp_path):
    model = tiny_models["tiny-llama"]
    docs = ["alpha beta gamma.", "delta epsilon.", "zeta eta theta iota kappa."]
    path = tmp_path / "c.txt"
    path.write_text("\n\n".join(docs))
    ids: list[int] = []  # the naive reference: tokenize each document, join with EOS
    for d in docs:
        ids += model.tokenizer.encode(d, add_special_tokens=False) + [model.tokenizer.eos_token_id]
    rows = list(corpus.token_rows(model, str(path), seq_len=4))
    assert [r.tolist() for r in rows] == [ids[i:i + 4] for i in range(0, len(ids) - 3, 4)]
    resumed = list(corpus.token_rows(model, str(path), seq_len=4, skip_rows=2))
    assert [r.tolist() for r in resumed] == [r.tolist() for r in rows[2:]]
    assert len(list(corpus.token_rows(model, str(path), n_tokens=5, seq_len=4))) == 2
    window = list(corpus.token_rows(model, str(path), n_tokens=8, seq_len=4, skip_rows=1))  # held-out slices
    assert [r.tolist() for r in window] == [r.tolist() for r in rows[1:3]]
    with pytest.raises(InterpError, match="has only"):
        list(corpus.token_rows(model, str(path), n_tokens=10_000, seq_len=4))


def test_local_formats_and_folders(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "one"}) + "\n\n" + json.dumps({"text": "two"}) + "\n")
    pq.write_table(pa.table({"text": ["three", "four"], "n": [3, 4]}), tmp_path / "b.parquet")
    (tmp_path / "c.txt").write_text("five\n\nsix\n")
    assert list(corpus.documents(str(tmp_path))) == ["one", "two", "three", "four", "five", "six"]
    before = corpus.corpus_id(str(tmp_path))
    assert before == corpus.corpus_id(str(tmp_path))
    (tmp_path / "c.txt").write_text("five\n\nseven\n")
    assert corpus.corpus_id(str(tmp_path)) != before  # content, not just names, keys the caches


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "does not exist"),
    (lambda p: (p / "x.jsonl").write_text('{"body": 1}\n'), "'text' field"),
    (lambda p: pq.write_table(pa.table({"body": ["a"]}), p / "x.parquet"), "no 'text' column"),
    (lambda p: (p / "x.parquet").write_bytes(b"not parquet"), "not a readable Parquet"),
])
def test_bad_local_corpora(tmp_path, setup, message):
    setup(tmp_path)
    target = tmp_path / ("missing.txt" if message == "does not exist" else next(tmp_path.iterdir()).name)
    with pytest.raises(InterpError, match=message):
        list(corpus.documents(str(target)))


def test_unreachable_hub_dataset_is_one_clear_error(monkeypatch):
    monkeypatch.setattr("interp.models._hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(InterpError, match="not a Hugging Face dataset this machine has cached"):
        list(corpus.documents("hf:someone/not-cached-anywhere"))


def test_stats_count_tokens(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "c.txt"
    path.write_text("the cat sat\n\non the mat")
    tok = tiny_models["tiny-llama"].tokenizer
    stats = corpus.corpus_stats(tok, str(path), "tiny")
    naive = len(tok.encode("the cat sat", add_special_tokens=False)) + len(tok.encode("on the mat", add_special_tokens=False))
    assert stats["documents"] == 2 and stats["tokens"] == naive
    assert Path(next((tmp_path / "cache" / "corpora").iterdir())).suffix == ".json"


def test_python_docs_is_a_held_out_corpus_outside_the_default():
    from pydoc_data.topics import topics

    from interp.corpus import corpus_id, documents

    docs = list(documents("python-docs"))
    assert docs == [topics[k].strip() for k in sorted(topics)] and len(docs) > 50
    assert corpus_id("python-docs") != corpus_id() and corpus_id("python-docs").startswith("python-docs-")
    assert not set(docs[:5]) & set(d for _, d in zip(range(3000), documents()))
