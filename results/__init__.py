"""After a search: export and verify the best network, evaluate it once on the test set, report, annotate the dashboard.

* ``python -m results.export --out best.yaml [--verify]``: a trial as a complete, re-trainable spec;
* ``python -m results.verify best.yaml``: rebuild, recount and re-train an exported spec;
* ``python -m results.evaluate best.yaml --seeds 3``: train on train+validation, measure the test set once;
* ``python -m results.report --out DIR``: Markdown report with plots;
* ``python -m results.dashboard``: the study note and the best network's files for ``optuna-dashboard``
  (:func:`results.dashboard.annotate`, which ``search.run`` calls at the end of a search).
"""
