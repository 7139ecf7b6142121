"""The files each stage hands the next, declared once (docs/contracts.md says it in prose).

One module per artefact, in the spirit of HELM's single data contract between layers: every
stage that writes or reads an artefact imports its names from here, so a file name, a split, a
column or a metric's direction is never spelt out twice.

- `dataset`: the dataset folder (`marinebench dataset build` -> training, evaluation, site)
- `adapter`: an adapter folder (`marinebench train` -> evaluation)
- `results`: a results run folder, the metric and task registry, the per-sample score record
  (`marinebench evaluate` -> site, README report)
- `site`: what `marinebench site build` reads
- `base_model`: the model every stage assumes when none is named
"""
