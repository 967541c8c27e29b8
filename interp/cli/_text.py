"""Plain-text summaries of the ``interp`` verbs' results, for a terminal."""

from __future__ import annotations

TOP = 5  # rows of a ranked list (strongest attention pairs, patching cells, DLA components)


def _label(axis: str, i: int, tokens: list[str]) -> str:
    return {"layer": f"L{i}", "head": f"H{i}"}.get(axis, f"{tokens[i]!r}@{i}" if axis == "pos" else f"{axis}{i}")


def _ranked(grid, axes: list[str], tokens: list[str], key=abs, n: int = TOP) -> list[tuple[float, str]]:
    """The ``n`` largest cells of a nested list by ``key``, each with its axis labels."""
    cells = []

    def walk(node, idx):
        if isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, idx + [i])
        elif node is not None and node == node:  # skip cells without a value (null or NaN)
            cells.append((node, " ".join(_label(a, i, tokens) for a, i in zip(axes, idx))))
    walk(grid, [])
    return sorted(cells, key=lambda c: key(c[0]), reverse=True)[:n]


def print_summary(verb_name: str, out: dict) -> None:
    """The short human-readable form of a verb's JSON object (without ``--json``)."""
    if verb_name == "relation" or (verb_name in ("patch", "circuit") and "relation" in out):
        from interp.cli.relation import relation_summary

        relation_summary(verb_name, out)
    elif verb_name == "gcg":
        from interp.cli.gcg import gcg_summary

        gcg_summary(out)
    elif verb_name == "weights":
        from interp.cli.weights import weights_summary

        weights_summary(out)
    elif verb_name == "models":
        for m in out["models"]:
            print(f"{m['name']:<28} {m['kind']:<12} offline={m['offline']!s:<5} {m['description']}")
        for c in out["corpora"]:
            size = f"{c['tokens']:>10,} tokens {c['documents']:>6,} docs" if c["available"] else "not installed"
            print(f"corpus {c['name']:<10} {size}  {c['description']} ({c['package']})")
    elif verb_name == "heads":
        print(f"loss first repeat {out['loss_first_repeat']:.2f}, second {out['loss_second_repeat']:.2f} nats")
        for h in out["top"]:
            print(f"{h['name']:<8} {out['detector']} {h['score']:.3f}")
    elif verb_name == "lens":
        for i, layer in enumerate(out["layers"]):
            tops = "  ".join(f"{t['token']!r} {t['prob']:.3f}" for t in out["top_tokens"][i])
            extra = "" if out["answer_prob"] is None else \
                f"  | P(answer)={out['answer_prob'][i]:.3f} rank {out['answer_rank'][i]}"
            print(f"{layer:<6} {tops}{extra}")
        if "dla" in out:
            d = out["dla"]
            print(f"logit diff {d['logit_diff']:.4f} = sum of DLA parts {d['sum_of_parts']:.4f}; largest parts:")
            parts = _ranked(d["heads"], ["layer", "head"], []) + [(v, f"MLP{i}") for i, v in enumerate(d["mlps"])]
            for v, name in sorted(parts, key=lambda c: abs(c[0]), reverse=True)[:TOP]:
                print(f"  {name.replace(' ', ''):<8} {v:+.4f}")
    elif verb_name in ("patch", "path-patch"):
        print(f"{out['method']} {out['site']} ({out['direction']}): clean {out['clean_baseline']:.3f}, "
              f"corrupt {out['corrupt_baseline']:.3f}; strongest normalised cells:")
        grid = out.get("normalized") or out["values"]
        for v, where in _ranked(grid, out["axes"]["values"], out["tokens"]):
            print(f"  {where:<32} {v:+.3f}")
        if "agreement" in out:
            print(f"agreement with exact: r={out['agreement']['pearson_r']:.3f}")
    elif verb_name == "circuit":
        print(f"{out['n_edges']} of {out['n_edges_total']} edges, {len(out['nodes'])} nodes: "
              f"faithfulness {out['faithfulness']:.3f}")
        for e in out["edges"][:10]:
            print(f"  {e['src']:>8} -> {e['dst']:<8} ({e['input']}) {e['score']:+.3f}")
        if "curve" in out:
            print("faithfulness by size: " + ", ".join(
                f"{k} {f:.2f}" for k, f in zip(out["curve"]["sizes"], out["curve"]["faithfulness"])))
    elif verb_name == "trace" and "effects" in out:
        print(f"average over {out['n_facts']} facts: clean {out['mean_clean_prob']:.3f}, "
              f"corrupted {out['mean_corrupt_prob']:.3f}")
        for kind, grid in out["effects"].items():
            for role, row in zip(out["roles"], grid):
                vals = [v for v in row if v == v]
                if vals:
                    best = max(range(len(row)), key=lambda i: row[i] if row[i] == row[i] else -1)
                    print(f"  {kind:<6} {role:<24} peak AIE {row[best]:.3f} at L{best}")
    elif verb_name == "trace":
        print(f"P({out['answer']!r}) clean {out['clean_prob']:.3f}, corrupted {out['corrupt_prob']:.3f}; "
              f"subject tokens {out['subject_range']}")
        for kind, grid in out["scores"].items():
            best = max((v, t, l) for t, row in enumerate(grid) for l, v in enumerate(row))
            print(f"  {kind:<6} strongest restore: token {best[1]} {out['tokens'][best[1]]!r} layer {best[2]} "
                  f"-> {best[0]:.3f}")
    elif verb_name == "edit" and "post" in out:
        for when in ("pre", "post"):
            m = out[when]
            print(f"{when:<5} ES {m['ES']:.1f}  PS {m['PS']:.1f}  NS {m['NS']:.1f}  S {m['S']:.1f}  "
                  f"EM {m['EM']:+.1f}  PM {m['PM']:+.1f}  NM {m['NM']:+.1f}  fluency {m['fluency']}")
        print(f"{out['n_requests']} requests; mean edit time {out['edit_seconds_mean']:.1f} s")
    elif verb_name == "edit":
        e = out["edit"]
        print(f"edited layer {e['layer']} in {e['seconds']:.1f} s: P({out['target']!r}) "
              f"{out['probs']['before']['target']:.3f} -> {out['probs']['after']['target']:.3f}")
        for p, b, a in zip(out["completion_prompts"], out["completions"]["before"], out["completions"]["after"]):
            print(f"  {p!r}\n    before: {b!r}\n    after:  {a!r}")
    elif verb_name == "probe":
        for name, r in out["results"].items():
            print(f"{name}: best layer {r['best_layer']}, accuracy {r['best_accuracy']:.3f} (chance {r['chance']:.2f})")
            print(f"  {'layer':>5} {'accuracy':>9} {'95% CI':>15} {'control':>8} {'selectivity':>11}")
            for i, layer in enumerate(r["layers"]):
                mark = " *" if layer == r["best_layer"] else ""
                print(f"  {layer:>5} {r['accuracy'][i]:>9.3f} {r['ci_low'][i]:>7.3f}-{r['ci_high'][i]:<7.3f} "
                      f"{r['control_accuracy'][i]:>8.3f} {r['selectivity'][i]:>11.3f}{mark}")
    elif verb_name == "steer":
        for a, m, g in zip(out["alphas"], out["mean_score"], out["generations"]):
            print(f"alpha {a:+6.1f}: P({out['positive']}) {m:.3f}  e.g. {g[0][:70]!r}")
    elif verb_name.startswith("sae "):
        from interp.cli.sae import sae_summary

        sae_summary(verb_name.split()[1], out)
    elif verb_name == "attention":
        print(f"tokens {out['tokens']}; patterns for layers {out['layers']} heads {out['heads']}"
              + (f"; figure {out['html']}" if "html" in out else ""))
        pairs = []  # strongest query -> key weights, the first position (the attention sink) left out
        for li, layer in enumerate(out["pattern"]):
            for hi, head in enumerate(layer):
                for q, row in enumerate(head):
                    pairs += [(w, out["layers"][li], out["heads"][hi], q, k) for k, w in enumerate(row) if 0 < k <= q]
        if pairs:
            print("strongest query -> key (first position left out):")
        for w, l, h, q, k in sorted(pairs, reverse=True)[:TOP]:
            print(f"  L{l}H{h}  {out['tokens'][q]!r}@{q} -> {out['tokens'][k]!r}@{k}  {w:.3f}")
    print(f"({out['seconds']:.2f} s)")

