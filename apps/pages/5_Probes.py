"""Linear probes by layer, with control tasks."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _shared import pick_model, show_error  # noqa: E402

from interp import InterpError  # noqa: E402
from interp.figures import probe_figure  # noqa: E402
from interp.representations.probes import SHIPPED, collect_activations, load_dataset, probe_layers  # noqa: E402

st.set_page_config(page_title="Probes", layout="wide")
st.title("Linear probes")
name, model = pick_model()
chosen = st.multiselect("Datasets", list(SHIPPED), default=["sentiment"], key="datasets")
every = st.number_input("Probe every n-th layer", 1, model.cfg.n_layers, max(1, model.cfg.n_layers // 10), key="every")

if st.button("Probe", type="primary", key="run"):
    try:
        layers = list(range(0, model.cfg.n_layers, int(every)))
        reports = []
        with st.spinner("Activations, then a cross-validated probe and its control per layer…"):
            for ds_name in chosen:
                acts = collect_activations(model, load_dataset(ds_name), layers)
                reports.append(probe_layers(acts, folds=3).to_dict())
        st.plotly_chart(probe_figure(reports), width="stretch")
        for r in reports:
            st.caption(f"{r['dataset']}: best layer {r['best_layer']} with accuracy {r['best_accuracy']:.3f} "
                       f"(chance {r['chance']:.2f}), {r['n_train']} train / {r['n_test']} test items.")
    except InterpError as err:
        show_error(err)
