"""Plotly figures for analysis results, grouped by the researcher's question. Pure: each function
takes a result and returns a figure. Every figure is importable from here
(``from interp.figures import patch_figure``).

Figures depend on results, never the reverse, and the rule that keeps it so has two halves:

- a figure reads a result by its fields (duck typing); the result classes are imported only
  under ``TYPE_CHECKING``, for annotations, so importing the figures imports no analysis;
- a result's ``.figure()`` method is the one place an analysis reaches the figures, and it
  imports ``interp.figures`` inside the method, never at module level.

So no import cycle runs between an analysis and its figure, at import time or at any other.
import-linter checks the first half (``pyproject.toml``: figures import no analysis).
"""

from __future__ import annotations

from interp.figures.attribution_graph import graph_figure, graph_layout, readable_id
from interp.figures.circuits import (attention_figure, attention_grid_figure, circuit_figure, click_targets,
                                     composition_figure, copying_figure, dla_figure, faithfulness_figure,
                                     full_circuit_figure, head_scores_figure, lens_figure, mimetic_figure,
                                     patch_figure)
from interp.figures.inputs import gcg_figure, prediction_figure
from interp.figures.knowledge import (average_trace_figure, edit_eval_figure, edit_figure, lre_figure,
                                      relation_circuit_figure, resample_figure, trace_figure)
from interp.figures.representations import probe_figure, steering_figure
from interp.figures.saes import replacement_figure, sae_tradeoff_figure

__all__ = ["attention_figure", "attention_grid_figure", "average_trace_figure", "circuit_figure", "click_targets",
           "composition_figure", "copying_figure", "dla_figure", "edit_eval_figure", "edit_figure",
           "faithfulness_figure", "full_circuit_figure", "gcg_figure", "graph_figure", "graph_layout", "head_scores_figure", "lens_figure",
           "lre_figure", "mimetic_figure", "patch_figure", "prediction_figure", "probe_figure", "readable_id",
           "relation_circuit_figure", "replacement_figure", "resample_figure", "sae_tradeoff_figure", "steering_figure", "trace_figure"]
