"""grade_file: JSONL in, JSONL out with verdicts, a summary, and clear errors."""

import json

import pytest

from ppa_eval.grading import GSM8K, MATH, GradingError

RECORDS = [
    {"id": 0, "gold": "\\frac{14}{3}", "response": "so $\\boxed{\\frac{28}{6}}$"},
    {"id": 1, "gold": "52_8", "response": "The final answer is $42$. I hope it is correct."},
    {"id": 2, "gold": "\\frac{1}{2^{99}}", "response": "The final answer is $\\frac{1}{2^{98}}$."},
    {"id": 3, "gold": "27", "response": "I could not finish."},
]


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.fixture
def math_file(tmp_path):
    return _write(tmp_path / "in.jsonl", [json.dumps(r) for r in RECORDS])


@pytest.mark.slow
def test_output_lines_are_the_input_plus_the_verdict(math_file, tmp_path):
    out = tmp_path / "out.jsonl"
    summary = MATH.grade_file(math_file, out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == [0, 1, 2, 3]
    assert all(line["gold"] == r["gold"] and line["response"] == r["response"]
               for line, r in zip(lines, RECORDS))
    assert [line["correct"] for line in lines] == [True, False, False, False]
    assert [line["reason"] for line in lines] == ["number", "mismatch", "mismatch", "no_answer"]
    assert [line["extracted"] for line in lines] == [
        "\\frac{28}{6}", "42", "\\frac{1}{2^{98}}", None
    ]
    assert lines[2]["math_verify"] is True  # it rounds 2^-98 and 2^-99 together
    assert summary == {
        "n": 4, "correct": 1, "accuracy": 0.25, "no_answer": 1, "fallback": 0, "errors": 0,
        "timeouts": 0, "disagreements": 1,
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]  # no temp


@pytest.mark.slow
def test_stdout_when_no_output_path(tmp_path, capsys):
    path = _write(tmp_path / "in.jsonl", [json.dumps({"gold": 18, "response": "#### 18"}), ""])
    summary = GSM8K.grade_file(path, None)
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["correct"] is True
    assert summary["n"] == 1 and summary["accuracy"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize(
    "bad_line, error",
    [
        ('{"gold": "3"}', "line 2: missing field response"),
        ('{"id": 7}', "line 2: missing field gold and response"),
        ("not json", "line 2: not valid JSON"),
        ('["3", "4"]', "line 2: not a JSON object"),
        ('{"gold": "3", "response": null}', "the response must be a string, not NoneType"),
        ('{"gold": "", "response": "\\\\boxed{\\\\$}"}', "the gold answer '' is empty"),
    ],
)
def test_a_bad_line_is_an_error_line_and_the_run_goes_on(tmp_path, bad_line, error):
    path = _write(tmp_path / "in.jsonl", [json.dumps(RECORDS[0]), bad_line, json.dumps(RECORDS[3])])
    out = tmp_path / "out.jsonl"
    summary = MATH.grade_file(path, out)
    first, bad, last = [json.loads(line) for line in out.read_text().splitlines()]
    assert (first["correct"], last["reason"]) == (True, "no_answer")
    assert (bad["correct"], bad["reason"]) == (False, "error")
    assert bad["error"].startswith(error)
    assert (summary["n"], summary["errors"]) == (3, 1)


@pytest.mark.slow
def test_lone_surrogate_is_graded_and_written_as_valid_utf8(tmp_path):
    lines = ['{"gold": "5", "response": "\\udc80 so $\\\\boxed{5}$"}', json.dumps(RECORDS[0])]
    path = _write(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    summary = MATH.grade_file(path, out)
    data = out.read_bytes()
    data.decode("utf-8")  # valid UTF-8
    first, second = [json.loads(line) for line in data.splitlines()]
    assert first["response"] == "\udc80 so $\\boxed{5}$"  # the same string read back
    assert first["correct"] and second["correct"] and summary["n"] == 2


def test_output_that_is_not_a_regular_file_is_refused_before_grading(math_file, tmp_path):
    with pytest.raises(GradingError, match="is not a regular file"):
        MATH.grade_file(math_file, tmp_path)  # a directory
    with pytest.raises(GradingError, match="cannot write"):
        MATH.grade_file(math_file, tmp_path / "absent" / "out.jsonl")


def test_missing_input_file(tmp_path):
    with pytest.raises(GradingError, match="cannot read"):
        GSM8K.grade_file(tmp_path / "absent.jsonl", None)
