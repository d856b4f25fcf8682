"""Natural-language explanations of units and the scorers that rate any kind of explanation.

Stages: `examples` draws the contexts every explainer and scorer shares; `explainers` turn them
(or a unit's N2G graph / token lookup) into one sentence; `scorers` rate sentences, and run the
graph and the lookups as classifiers on the very same contexts; `pipeline` ties it to a run
directory (one JSON file per unit, resumable). See docs/explain.md.
"""
