"""The feature store: SAE activations over a corpus as Parquet shards, queried with DuckDB.

An extraction job (:mod:`saes.features.extract`) cuts each corpus document into contexts of
``ctx`` tokens and writes, per shard of ``contexts_per_shard`` contexts:

- ``tokens/NNNNN.parquet``: ``context, document, doc_offset, position, token, skipped``
  (one row per token; ``skipped`` is 0 where the SAE read the token, 1 for the attention
  sink or BOS, 2 for a massive activation, as in training and evaluation);
- ``acts/<sae>/NNNNN.parquet``: ``feature, context, position, value``, nonzero values only,
  sorted by feature in row groups of ``ROW_GROUP`` rows, so a query for one feature reads
  the few row groups whose min/max statistics contain it;
- ``shards/NNNNN.json``: the shard's commit record (its files' sizes and SHA-256), written
  last and atomically. A shard without it does not exist for readers or for a resume.

At the end, ``features/<sae>.parquet`` holds per-feature statistics (firing count and
frequency, max, mean, quantiles, a histogram over (0, max]) and weight-based properties
(logit effects and decoder neighbours), and ``manifest.json`` lists every shard.
``vocab.parquet`` maps token ids to their text, so that reading a store needs neither
the model nor its tokenizer. Explanations and their scores are appended under
``explanations/`` (one Parquet file per run).

Reading never loads the whole store: each query is one DuckDB statement over the list of
shard files. A missing or damaged shard is reported once on stderr and left out; the rest
of the store stays readable.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.errors import InterpError

__all__ = ["FORMAT", "ROW_GROUP", "FeatureStore", "file_record", "parquet_scan", "sae_name"]

FORMAT = 1
ROW_GROUP = 32_768
SKIP_SEEN, SKIP_SINK, SKIP_MASSIVE = 0, 1, 2


def file_record(path: Path) -> dict:
    """Size and SHA-256 of a file, as a shard's commit record keeps them."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def sae_name(path: str | Path, taken: set[str]) -> str:
    """A short unique name for an SAE directory inside a store (its folder name)."""
    base = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(path).resolve().name) or "sae"
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}-{i}"
    return name


@dataclass
class Context:
    """One context of a top-k or quantile list: its tokens and the feature's value on each."""

    context: int
    document: int
    doc_offset: int
    """Where the context starts in its document (in tokens), with or without a window."""
    tokens: list[str]
    values: list[float]
    """The feature's activation at each token (0 where it did not fire or the SAE did not read it)."""
    max_value: float
    max_position: int
    """Index of the maximum in ``tokens`` (within the window, when there is one)."""
    window_start: int = 0
    """Position in the context of ``tokens[0]``: 0 for a whole context, else where the window starts."""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class FeatureStore:
    """Read access to a store written by :func:`saes.features.extract.extract_features`."""

    def __init__(self, path: str | Path, quiet: bool = False):
        self.path = Path(path)
        if self.path.is_file():
            raise InterpError(f"{self.path} is a file, not a feature store (a directory written by `interp sae extract`)")
        if (self.path / "cfg.json").is_file() and not (self.path / "manifest.json").exists():
            raise InterpError(f"{self.path} is an SAE directory, not a feature store; write its store with "
                              f"`interp sae extract {self.path} --out STORE`")
        try:
            self.manifest = json.loads((self.path / "manifest.json").read_text())
        except FileNotFoundError:
            raise InterpError(f"{self.path} is not a feature store (no manifest.json); "
                              "write one with `interp sae extract`") from None
        except json.JSONDecodeError as err:
            raise InterpError(f"{self.path / 'manifest.json'} is not JSON ({err.msg})") from None
        if self.manifest.get("format") != FORMAT:
            raise InterpError(f"{self.path} has store format {self.manifest.get('format')!r}; this workbench reads {FORMAT}")
        self.saes: dict[str, dict] = {s["name"]: s for s in self.manifest["saes"]}
        self.shards, self.bad = self._shards()
        if self.bad and not quiet:
            print(f"interp: warning: {self.path}: {len(self.bad)} shard(s) missing or damaged, left out: "
                  + "; ".join(f"{s} ({why})" for s, why in self.bad[:3]) + ("; ..." if len(self.bad) > 3 else ""),
                  file=sys.stderr)
        if not self.shards:
            raise InterpError(f"{self.path} holds no complete shard yet; run `interp sae extract` into it")
        self._db = None
        self._vocab: list[str] | None = None

    # ------------------------------------------------------------------ layout

    def _shards(self) -> tuple[list[dict], list[tuple[int, str]]]:
        """Committed shards whose files are present with their recorded sizes (a cheap check at every
        open; :meth:`verify` compares checksums)."""
        records = self.manifest.get("shards")
        if records is None:  # a job still running or stopped: its commit records are the list
            records = []
            for p in sorted((self.path / "shards").glob("*.json")):
                try:
                    records.append(json.loads(p.read_text()))
                except (OSError, json.JSONDecodeError):
                    continue
        good, bad = [], []
        for rec in records:
            why = None
            for rel, meta in rec["files"].items():
                f = self.path / rel
                if not f.exists():
                    why = f"{rel} missing"
                elif f.stat().st_size != meta["bytes"]:
                    why = f"{rel} has {f.stat().st_size} bytes, not {meta['bytes']}"
                if why:
                    break
            (bad.append((rec["shard"], why)) if why else good.append(rec))
        return sorted(good, key=lambda r: r["shard"]), bad

    def verify(self) -> list[tuple[int, str]]:
        """Shards whose files do not match their recorded SHA-256 (reads every byte)."""
        out = list(self.bad)
        for rec in self.shards:
            for rel, meta in rec["files"].items():
                if file_record(self.path / rel)["sha256"] != meta["sha256"]:
                    out.append((rec["shard"], f"{rel} checksum differs"))
                    break
        return out

    def sae(self, name: str | None = None) -> dict:
        """The manifest entry of SAE ``name`` (default: the only, or first, SAE of the store)."""
        if name is None:
            return self.manifest["saes"][0]
        if name not in self.saes:
            raise InterpError(f"the store has no SAE {name!r}; it holds {', '.join(self.saes)}")
        return self.saes[name]

    def match(self, model_name: str, sae_dir: str | Path | None = None) -> str:
        """The name of the store's SAE read with ``model_name`` and, if given, the SAE in ``sae_dir``
        (matched by its weights' SHA-256); one clear error when the store was written for another
        model or another SAE."""
        if self.manifest.get("model") != model_name:
            raise InterpError(f"{self.path} was extracted with model {self.manifest.get('model')!r}, not "
                              f"{model_name!r}; pick that model, or extract a store with this one")
        if sae_dir is None:
            return self.sae()["name"]
        from saes.io import WEIGHTS

        weights = Path(sae_dir) / WEIGHTS
        if not weights.exists():
            raise InterpError(f"{sae_dir} is not an SAE directory (no {WEIGHTS})")
        digest = file_record(weights)["sha256"]
        for entry in self.manifest["saes"]:
            if entry.get("weights_sha256") == digest:
                return entry["name"]
        raise InterpError(f"{self.path} was extracted from another SAE than {sae_dir} (its weights differ from "
                          f"{', '.join(self.saes)}); extract a store from this SAE with `interp sae extract`")

    def check_feature(self, feature: int, sae: str | None = None) -> int:
        d_sae = self.sae(sae)["d_sae"]
        if not 0 <= feature < d_sae:
            raise InterpError(f"feature {feature} is out of range: SAE {self.sae(sae)['name']} has {d_sae} "
                              f"features (0-{d_sae - 1})")
        return feature

    def files(self, table: str, sae: str | None = None) -> list[str]:
        if table == "tokens":
            return [str(self.path / f"tokens/{r['shard']:05d}.parquet") for r in self.shards]
        name = self.sae(sae)["name"]
        return [str(self.path / f"acts/{name}/{r['shard']:05d}.parquet") for r in self.shards]

    @property
    def db(self):
        if self._db is None:
            import duckdb

            self._db = duckdb.connect()
            self._db.execute("SET threads TO 2")
        return self._db

    def query(self, sql: str, params: list | None = None):
        """Run ``sql`` with ``{tokens}``, ``{acts}`` (the first SAE's) and ``{features}`` filled in as
        Parquet scans of this store; returns the rows as dicts."""
        return self._sql(sql, None, params)

    def _sql(self, sql: str, sae: str | None, params: list | None = None, **extra: str):
        scans = {"tokens": parquet_scan(self.files("tokens")), "acts": parquet_scan(self.files("acts", sae)), **extra}
        if "{features}" in sql:
            scans["features"] = parquet_scan([str(self.features_path(sae))])
        return _rows(self.db.execute(sql.format(**scans), params or []))

    def features_path(self, sae: str | None = None) -> Path:
        path = self.path / "features" / f"{self.sae(sae)['name']}.parquet"
        if not path.exists():
            raise InterpError(f"{self.path} has no per-feature statistics yet (the extraction did not finish); "
                              "run the same `interp sae extract` again to complete it")
        return path

    @property
    def vocab(self) -> list[str]:
        if self._vocab is None:
            import pyarrow.parquet as pq

            self._vocab = pq.read_table(self.path / "vocab.parquet").column("text").to_pylist()
        return self._vocab

    # ------------------------------------------------------------------ queries

    def feature_row(self, feature: int, sae: str | None = None) -> dict[str, Any]:
        """The per-feature statistics and weight properties of one feature."""
        self.check_feature(feature, sae)
        rows = self._sql("SELECT * FROM {features} WHERE feature = ?", sae, [feature])
        return rows[0]

    def top_contexts(self, feature: int, k: int = 10, sae: str | None = None, window: int | None = None
                     ) -> list[Context]:
        """The ``k`` contexts where ``feature`` reaches its highest values (one entry per context, ranked by
        its maximum), each with every token's activation; ``window`` keeps that many tokens either side of
        the maximum."""
        self.check_feature(feature, sae)
        top = self._sql("SELECT context, max(value) AS m, arg_max(position, value) AS p FROM {acts} "
                        "WHERE feature = ? GROUP BY context ORDER BY m DESC, context LIMIT ?", sae,
                        [feature, k])
        return self._contexts(feature, [(r["context"], r["m"], r["p"]) for r in top], sae, window)

    def quantile_groups(self, feature: int, groups: int = 5, per_group: int = 5, sae: str | None = None,
                        window: int | None = None, seed: int = 0) -> list[tuple[float, float, list[Context]]]:
        """SAEDashboard's interval examples: (0, max] cut into ``groups`` equal intervals, and up to
        ``per_group`` contexts (one per context, chosen by a seeded hash) whose maximum falls in each.
        Returned from the highest interval down, as (low, high, contexts)."""
        self.check_feature(feature, sae)
        rows = self._sql(
            "WITH c AS (SELECT context, max(value) AS m, arg_max(position, value) AS p FROM {acts} "
            "WHERE feature = ? GROUP BY context), "
            "b AS (SELECT *, least(floor(m / (SELECT max(m) FROM c) * ?), ? - 1)::INT AS bin FROM c) "
            "SELECT * FROM b QUALIFY row_number() OVER (PARTITION BY bin ORDER BY hash(context + ?)) <= ? "
            "ORDER BY bin DESC, m DESC", sae, [feature, groups, groups, seed, per_group])
        if not rows:
            return []
        top = max(r["m"] for r in rows)
        top = self.feature_row(feature, sae)["max"] if self._has_features(sae) else top
        out = []
        for b in range(groups - 1, -1, -1):
            members = [(r["context"], r["m"], r["p"]) for r in rows if r["bin"] == b]
            if members:
                out.append((top * b / groups, top * (b + 1) / groups, self._contexts(feature, members, sae, window)))
        return out

    def _has_features(self, sae: str | None) -> bool:
        return (self.path / "features" / f"{self.sae(sae)['name']}.parquet").exists()

    def _contexts(self, feature: int, picks: list[tuple[int, float, int]], sae: str | None,
                  window: int | None) -> list[Context]:
        if not picks:
            return []
        ids = [c for c, _, _ in picks]
        marks = ",".join("?" * len(ids))
        toks = self._sql(f"SELECT context, document, doc_offset, position, token FROM {{tokens}} "
                         f"WHERE context IN ({marks}) ORDER BY context, position", sae, ids)
        vals = self._sql(f"SELECT context, position, value FROM {{acts}} WHERE feature = ? AND context IN ({marks})",
                         sae, [feature, *ids])
        by_ctx: dict[int, list[dict]] = {}
        for t in toks:
            by_ctx.setdefault(t["context"], []).append(t)
        value_at = {(v["context"], v["position"]): v["value"] for v in vals}
        vocab, out = self.vocab, []
        for c, m, p in picks:
            whole = by_ctx.get(c, [])
            lo, hi = (0, len(whole)) if window is None else (max(0, p - window), min(len(whole), p + window + 1))
            rows = whole[lo:hi]
            out.append(Context(c, whole[0]["document"], whole[0]["doc_offset"], [vocab[r["token"]] for r in rows],
                               [value_at.get((c, r["position"]), 0.0) for r in rows], m, p - lo, lo))
        return out

    def search_token(self, token: str, top: int = 10, sae: str | None = None) -> list[dict]:
        """The features that fire most on ``token`` across the store: mean activation over every occurrence
        of the token that the SAE read (0 where a feature did not fire), with how often each fired there."""
        ids = [i for i, t in enumerate(self.vocab) if t == token]
        if not ids:
            near = [t for t in self.vocab if t.strip() == token.strip()][:3]
            raise InterpError(f"no token in the vocabulary reads {token!r}" +
                              (f"; did you mean {', '.join(repr(t) for t in near)}?" if near else
                               " (a word inside a sentence usually starts with a space: ' Paris')"))
        n = self._sql(f"SELECT count(*) AS n FROM {{tokens}} WHERE token IN ({','.join('?' * len(ids))}) "
                      "AND skipped = 0", sae, ids)[0]["n"]
        if n == 0:
            skipped = self._sql(f"SELECT skipped, count(*) AS n FROM {{tokens}} WHERE token IN "
                                f"({','.join('?' * len(ids))}) GROUP BY skipped ORDER BY skipped", sae, ids)
            if skipped:
                why = {SKIP_SINK: "as a context's first token (the attention sink, which the SAE never reads)",
                       SKIP_MASSIVE: "where its activation norm was massive (--max-norm-ratio)"}
                where = " and ".join(f"{r['n']:,} times {why.get(r['skipped'], 'where it was skipped')}"
                                     for r in skipped)
                raise InterpError(f"the token {token!r} occurs in this store only where it is not encoded: {where}; "
                                  "no feature value exists there")
            raise InterpError(f"the token {token!r} does not occur in this store's {self.manifest['tokens']:,} tokens")
        rows = self._sql(
            f"SELECT a.feature, sum(a.value) / ? AS mean_value, count(*) / ? AS fire_rate, max(a.value) AS max_value "
            f"FROM {{acts}} a JOIN (SELECT context, position FROM {{tokens}} WHERE token IN ({','.join('?' * len(ids))})"
            f" AND skipped = 0) t USING (context, position) GROUP BY a.feature ORDER BY mean_value DESC, a.feature "
            f"LIMIT ?", sae, [float(n), float(n), *ids, top])
        return [{**r, "occurrences": n} for r in rows]

    def correlated(self, feature: int, top: int = 10, sae: str | None = None) -> list[dict]:
        """Features of the same SAE that fire on the same tokens as ``feature``: Jaccard index of their
        firing sets, |A∩B| / |A∪B|, with the co-firing count."""
        self.check_feature(feature, sae)
        rows = self._sql(
            "WITH a AS (SELECT context, position FROM {acts} WHERE feature = ?), "
            "co AS (SELECT b.feature, count(*) AS both_ FROM {acts} b JOIN a USING (context, position) "
            "WHERE b.feature <> ? GROUP BY b.feature), "
            "n AS (SELECT feature, fires AS n FROM {features}) "
            "SELECT co.feature, both_ AS co_fires, both_ / ((SELECT n FROM n WHERE feature = ?) + n.n - both_) "
            "AS jaccard FROM co JOIN n USING (feature) ORDER BY jaccard DESC, co.feature LIMIT ?",
            sae, [feature, feature, feature, top])
        return rows

    def label(self, feature: int, sae: str | None = None, k: int = 3) -> str:
        """A short name for a feature: its newest stored explanation, otherwise the tokens where its top
        ``k`` contexts peak ("" for a feature that never fired)."""
        expl = self.explanations(feature, sae)
        if expl and expl[0].get("explanation"):
            return str(expl[0]["explanation"])
        tops = self.top_contexts(feature, k, sae, window=0)
        return ", ".join(repr(c.tokens[c.max_position] if c.max_position < len(c.tokens) else c.tokens[-1])
                         for c in tops)

    def snippets(self, feature: int, k: int = 3, sae: str | None = None, window: int = 3) -> list[str]:
        """The feature's ``k`` top contexts as short text, ``window`` tokens either side of the peak and the
        peak token in brackets, then the peak's value: ``"…is in the[ city] of… (4.20)"`` (a node's hover)."""
        out = []
        for c in self.top_contexts(feature, k, sae, window=window):
            toks = [f"[{t}]" if i == c.max_position else t for i, t in enumerate(c.tokens)]
            out.append(("…" if c.window_start else "") + "".join(toks).replace("\n", "⏎") + f"… ({c.max_value:.2f})")
        return out

    def set_labels(self, tset, features, fallback: list[str], only=None) -> list[str]:
        """Labels of ``features`` (rows of layer, position, feature) of a transcoder set whose layers this
        store holds (matched by input hook and width): ``L{layer}#{feature} <label>``, or ``fallback[i]``
        where the store has no entry for the layer, or where ``i`` is not in ``only`` (the nodes a pruned
        graph shows: each label is a few queries)."""
        by_hook = {s["hook"]: s for s in self.manifest["saes"]}
        wanted = None if only is None else {int(i) for i in only}
        out = []
        for i, (layer, _, feat) in enumerate(features):
            entry = by_hook.get(tset.input_hook(int(layer)))
            text = ""
            if entry is not None and entry["d_sae"] == tset[int(layer)].cfg.d_sae and (wanted is None or i in wanted):
                text = self.label(int(feat), entry["name"])
            out.append(f"L{layer}#{feat} {text}" if text else fallback[i])
        return out

    def explanations(self, feature: int | None = None, sae: str | None = None) -> list[dict]:
        """Stored explanations and their scores (newest first)."""
        files = sorted((self.path / "explanations").glob("*.parquet"))
        if not files:
            return []
        where = "WHERE sae = ?" + (" AND feature = ?" if feature is not None else "")
        params = [self.sae(sae)["name"]] + ([feature] if feature is not None else [])
        scan = parquet_scan([str(f) for f in files])[:-1] + ", union_by_name = true)"  # older rows lack 'warning'
        return _rows(self.db.execute(f"SELECT * FROM {scan} {where} ORDER BY created DESC", params))


def _rows(cursor) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def parquet_scan(files: list[str]) -> str:
    """DuckDB's ``read_parquet`` over ``files``, each path quoted as an SQL string."""
    if not files:
        raise InterpError("the store has no files for this table")
    return "read_parquet([" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "])"
