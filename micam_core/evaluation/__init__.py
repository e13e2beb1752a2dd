"""Faithfulness at data-set scale: one Parquet row per (model, method, image), resumable, with statistics.

``python -m micam_core evaluate ...`` runs it (see :mod:`.cli`); ``python -m micam_core summarize DIR``
turns the rows into tables and plots (see :mod:`.summary`). The row of one image is computed by
:func:`.rows.image_rows`, the same function for both engines (:mod:`.local`, :mod:`.ray_engine`).
"""

TARGETS = ("label", "top1")  # --target: the label when it names a class of the model (else top-1), or top-1
ENGINES = ("local", "ray")
# The [eval] extra of pyproject.toml (import names; tests/test_evaluate_talks.py keeps them equal).
EXTRAS = ("ray", "pyarrow", "datasets", "pandas")  # pyproject's [eval] extra (scipy is a core dependency)
