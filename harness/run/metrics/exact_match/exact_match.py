"""exact_match: share of predictions equal to their reference after stripping outer whitespace.

Shipped with the harness and loaded by path (`evaluate.load(<this folder>)`), since the hub's
`evaluate.load("exact_match")` needs a network this project cannot assume.
"""

import datasets
import evaluate

_DESCRIPTION = "Share of predictions that equal their reference exactly (outer whitespace stripped)."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of predicted strings.
    references: list of reference strings.
Returns:
    exact_match: float in [0, 1].
    per_example: one bool per prediction (the run writes them beside its record, for paired comparisons).
"""


class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        if not references:
            return {"exact_match": 0.0, "per_example": []}
        hits = [p.strip() == r.strip() for p, r in zip(predictions, references, strict=True)]
        return {"exact_match": sum(hits) / len(references), "per_example": hits}
