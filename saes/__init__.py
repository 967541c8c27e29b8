"""Sparse autoencoders on the workbench's hooked models.

Architectures, the activation store, the trainer, evaluation and SAELens-format
files arrive here; see the project's issues and DESIGN.md.
"""

__all__: list[str] = []
