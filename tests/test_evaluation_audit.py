"""Report 00's audit tables: every answer scored correct, every gold left ungraded."""

from mathkit.evaluation.audit import audit_tables, correct_answers_table, ungradable_table

RECORDS = [
    {"id": "a", "gold": "12", "extracted": "12", "extracted_strict": "12", "correct": True,
     "correct_strict": True, "finished": True, "gradable": True, "completion": "12 = 5+7\n#### 12"},
    {"id": "b", "gold": "7", "extracted": "7", "extracted_strict": None, "correct": True,
     "correct_strict": False, "finished": False, "gradable": True,
     "completion": "word " * 100 + "so it is 7."},
    {"id": "c", "gold": "3", "extracted": "4", "extracted_strict": None, "correct": False,
     "correct_strict": False, "finished": True, "gradable": True, "completion": "4"},
    {"id": "d", "gold": "376 and 625", "extracted": "3", "extracted_strict": "3", "correct": None,
     "correct_strict": None, "finished": True, "gradable": False, "completion": "#### 3"},
]


def test_correct_answers_table_lists_each_correct_answer_with_its_evidence():
    rows = correct_answers_table(RECORDS, set_name="toy", tail_chars=20)
    assert [r["id"] for r in rows] == ["a", "b"]
    assert rows[1] == {"set": "toy", "id": "b", "gold": "7", "extracted": "7", "extracted_strict": None,
                       "correct": True, "correct_strict": False, "finished": False,
                       "completion_end": "…ord word so it is 7."}  # the last 20 characters
    assert rows[0]["completion_end"] == "12 = 5+7 #### 12"   # whitespace folded for a table cell


def test_ungradable_table_says_why():
    rows = ungradable_table(RECORDS, set_name="toy")
    assert rows == [{"set": "toy", "id": "d", "gold": "376 and 625",
                     "reason": "several values, not a single answer"}]


def test_audit_tables_over_several_sets():
    tables = audit_tables({"x": RECORDS, "y": RECORDS[:1]})
    assert [(r["set"], r["id"]) for r in tables["correct"]] == [("x", "a"), ("x", "b"), ("y", "a")]
    assert [(r["set"], r["id"]) for r in tables["ungradable"]] == [("x", "d")]
