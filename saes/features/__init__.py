"""Feature jobs on a trained dictionary: what its features respond to and what they do.

:mod:`~saes.features.extract` writes a dictionary's activations over a corpus into a Parquet
store that :mod:`~saes.features.store` queries with DuckDB; :mod:`~saes.features.stats` computes
the per-feature tables, :mod:`~saes.features.dashboard` a feature page,
:mod:`~saes.features.export` Neuronpedia's layout, :mod:`~saes.features.steer` clamps a feature
during generation and :mod:`~saes.features.autointerp` explains and scores it. The public names
stay importable from :mod:`saes` (``from saes import FeatureStore``).
"""
