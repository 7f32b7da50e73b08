"""The shipped `evaluate` metric modules, loaded by path (no hub)."""

import pytest

from harness.run.evaluation import load_metric, score


def test_exact_match_strips_outer_whitespace():
    m = load_metric("exact_match")
    assert m.compute(predictions=["a ", "b", "c"], references=["a", "x", "c"])["exact_match"] == pytest.approx(2 / 3)


def test_field_accuracy_counts_fields_and_invalid_json():
    m = load_metric("field_accuracy")
    refs = ['{"a": 1, "b": null, "c": "x"}', '{"a": 2, "b": 3, "c": "y"}']
    preds = ['{"a": 1.0, "b": null, "c": "z"}', "not json"]
    r = m.compute(predictions=preds, references=refs)
    assert r["field_accuracy"] == pytest.approx(2 / 6)
    assert r["json_valid"] == 0.5
    assert r["exact_match"] == 0.0
    assert r["per_field"] == {"a": 0.5, "b": 0.5, "c": 0.0}


def test_field_exact_match_needs_same_keys():
    m = load_metric("field_accuracy")
    r = m.compute(predictions=['{"a": 1, "extra": 2}', '{"a": 1}'], references=['{"a": 1}', '{"a": 1}'])
    assert r["exact_match"] == 0.5
    assert r["field_accuracy"] == 1.0


def test_json_scorer_reports_both_exact_matches():
    r = score(['{"a":1}'], ['{"a": 1}'], "json_fields")
    assert r["exact_match"] == 1.0
    assert r["exact_match_text"] == 0.0
