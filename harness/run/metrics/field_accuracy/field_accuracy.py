"""field_accuracy: per-field and overall accuracy of JSON-object predictions against JSON references.

A prediction that is not a JSON object counts every field wrong. Numbers compare by value (2 == 2.0).
Also returns json_valid (share of predictions that parse) and exact_match (all fields right, no extras).
Shipped with the harness and loaded by path with `evaluate.load(<this folder>)`.
"""

import json

import datasets
import evaluate

_DESCRIPTION = "Per-field accuracy of JSON predictions; invalid JSON scores zero on every field."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of strings, each expected to hold one JSON object.
    references: list of strings, each one JSON object (the gold fields).
Returns:
    field_accuracy: mean over examples and reference fields of exact value equality.
    json_valid: share of predictions that parse as a JSON object.
    exact_match: share of predictions whose fields all equal the reference's (same key set).
    per_field: {field: accuracy} for every key of the references.
    per_example: for each prediction {"valid", "exact_match", "fields": {field: right}} (the run writes them
        beside its record, so methods can be compared example by example).
"""


def _parse(text):
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def _same(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) < 1e-9
    if isinstance(a, str) and isinstance(b, str):
        return a.strip() == b.strip()
    return a == b


class FieldAccuracy(evaluate.Metric):
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
        hits: dict[str, int] = {}
        counts: dict[str, int] = {}
        valid = exact = 0
        per_example = []
        for pred_text, ref_text in zip(predictions, references, strict=True):
            ref = _parse(ref_text)
            if ref is None:
                raise ValueError(f"reference is not a JSON object: {ref_text!r}")
            pred = _parse(pred_text)
            valid += pred is not None
            is_valid = pred is not None
            pred = pred or {}
            all_right = set(pred) == set(ref)
            fields = {}
            for key, gold in ref.items():
                counts[key] = counts.get(key, 0) + 1
                right = key in pred and _same(pred[key], gold)
                hits[key] = hits.get(key, 0) + right
                fields[key] = bool(right)
                all_right = all_right and right
            exact += all_right
            per_example.append({"valid": is_valid, "exact_match": bool(all_right), "fields": fields})
        n = len(references)
        total = sum(counts.values())
        return {
            "field_accuracy": sum(hits.values()) / total if total else 0.0,
            "json_valid": valid / n if n else 0.0,
            "exact_match": exact / n if n else 0.0,
            "per_field": {k: hits[k] / counts[k] for k in counts},
            "per_example": per_example,
        }
