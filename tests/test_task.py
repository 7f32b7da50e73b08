"""The built-in task generator: deterministic, disjoint splits, held-out phrasings only in test."""

import json

from harness.run import task


def _splits(seed=0):
    return task.generate_splits(seed=seed, n_train=300, n_validation=60, n_test=120)


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = _splits(0), _splits(0), _splits(1)
    assert [e.message for e in a["train"]] == [e.message for e in b["train"]]
    assert [e.message for e in a["test"]] == [e.message for e in b["test"]]
    assert [e.message for e in a["train"]] != [e.message for e in c["train"]]


def test_splits_do_not_overlap():
    s = _splits()
    assert [len(s[k]) for k in ("train", "validation", "test")] == [300, 60, 120]
    messages = {k: {e.message for e in v} for k, v in s.items()}
    ids = {k: {e.fields["order_id"] for e in v} for k, v in s.items()}
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not messages[a] & messages[b]
        assert not ids[a] & ids[b]


def test_unseen_phrasings_only_in_test():
    s = _splits()
    assert not any(e.unseen_phrasing for e in s["train"] + s["validation"])
    unseen = sum(e.unseen_phrasing for e in s["test"])
    assert 0 < unseen < len(s["test"])


def test_completion_is_json_with_every_field_and_some_nulls():
    s = _splits()
    parsed = [json.loads(e.completion()) for e in s["train"]]
    assert all(list(p) == list(task.FIELDS) for p in parsed)
    for field in ("name", "amount", "date", "weight_kg"):
        values = [p[field] for p in parsed]
        assert None in values and any(v is not None for v in values), field
    assert all(len(p["date"]) == 10 for p in parsed if p["date"])


def test_order_id_is_normalised_from_varied_spellings():
    s = _splits()
    for e in s["train"][:100]:
        oid = e.fields["order_id"]
        digits = oid.split("-")[1]
        assert digits in e.message
        assert oid[0] in e.message.upper()


def test_write_jsonl_has_prompt_and_completion(tmp_path):
    paths = task.write_jsonl(_splits(), tmp_path)
    rows = [json.loads(line) for line in paths["test"].read_text().splitlines()]
    assert len(rows) == 120
    assert rows[0]["prompt"].startswith(task.INSTRUCTION)
    assert json.loads(rows[0]["completion"])["order_id"]
    assert not list(tmp_path.glob("*.tmp"))
