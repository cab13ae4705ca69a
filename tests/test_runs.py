"""Results on disk: nothing half-written passes for finished, and one writer at a time."""

import json
import os
import stat

import pytest

from ppa_eval.patterns import PowerAttention, PowerPattern, parse_spec
from ppa_eval.runs import (RESULT_SETTINGS, RunError, append_batch, append_lines, check_manifest, exclusive,
                           pattern_fields, read_samples, resume_samples, run_name, write_json_atomic)


def test_partial_last_line_from_a_killed_run_is_dropped(tmp_path):
    path = tmp_path / "samples.jsonl"
    append_lines(path, [{"doc_id": "a"}, {"doc_id": "b"}])
    with open(path, "ab") as handle:
        handle.write(b'{"doc_id": "c", "resp')  # kill -9 in the middle of a write
    assert [r["doc_id"] for r in read_samples(path)] == ["a", "b"]
    assert path.read_bytes().endswith(b'"resp')  # reading writes nothing
    assert [r["doc_id"] for r in resume_samples(path)] == ["a", "b"]
    assert path.read_bytes().endswith(b'"b"}\n')


def test_the_whole_lines_of_a_torn_batch_are_dropped_too(tmp_path):
    path = tmp_path / "samples.jsonl"
    append_batch(path, [{"doc_id": "a"}, {"doc_id": "b"}])
    complete = path.read_bytes()
    append_batch(path, [{"doc_id": "c"}, {"doc_id": "d"}, {"doc_id": "e"}])
    path.write_bytes(path.read_bytes()[: -len(b'"e", "batch_lines": 3}\n')])  # c and d whole, e cut
    assert [r["doc_id"] for r in read_samples(path)] == ["a", "b"]
    assert [r["doc_id"] for r in resume_samples(path)] == ["a", "b"]
    assert path.read_bytes() == complete


def test_a_bad_complete_line_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text('{"doc_id": "a"}\n[1, 2]\n')
    with pytest.raises(RunError, match=r"samples.jsonl, line 2: not a JSON object"):
        read_samples(path)
    path.write_text('{"doc_id": "a"}\n{"response": "no id"}\n')
    with pytest.raises(RunError, match=r"samples.jsonl, line 2: not a sample"):
        read_samples(path)


def test_line_separators_inside_responses_survive(tmp_path):
    # json.dumps(ensure_ascii=False) writes U+2028 raw; str.splitlines would cut the line there
    path = tmp_path / "samples.jsonl"
    records = [{"doc_id": "a", "response": "x\u2028y\u0085z\x1c"}, {"doc_id": "b"}]
    append_lines(path, records)
    assert read_samples(path) == records


def test_json_files_get_the_mode_of_the_samples_file(tmp_path):
    old = os.umask(0o022)
    try:
        append_lines(tmp_path / "samples.jsonl", [{"doc_id": "a"}])
        write_json_atomic(tmp_path / "metrics.json", {"n": 1})
    finally:
        os.umask(old)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in tmp_path.iterdir()}
    assert modes == {"samples.jsonl": 0o644, "metrics.json": 0o644}


def test_atomic_json_leaves_no_temporary_files(tmp_path):
    write_json_atomic(tmp_path / "m.json", {"x": 1})
    write_json_atomic(tmp_path / "m.json", {"x": 2})
    assert json.loads((tmp_path / "m.json").read_text()) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def holding_a_sample(run_dir):
    """A run directory with one finished sample: from then on its settings are its results'."""
    (run_dir / "gsm8k").mkdir(parents=True)
    (run_dir / "gsm8k" / "samples.jsonl").write_text('{"doc_id": "a"}\n')
    return run_dir


def test_manifest_mismatch_is_refused(tmp_path):
    path = holding_a_sample(tmp_path) / "manifest.json"
    check_manifest(path, {"power": "1/2", "seed": 1}, ("power", "seed"))
    check_manifest(path, {"power": "1/2", "seed": 1, "extra": "ignored"}, ("power", "seed"))
    with pytest.raises(RunError, match=r"power: '1/2' -> '3/4'"):
        check_manifest(path, {"power": "3/4", "seed": 1}, ("power", "seed"))


def test_a_run_made_before_specs_resumes_and_a_sink_is_a_new_run(tmp_path):
    old = {"power": "1/2", "window": 64, "seed": 1}  # manifests before pattern specs named PPA by p and w
    (holding_a_sample(tmp_path) / "manifest.json").write_text(json.dumps(old))
    check_manifest(tmp_path / "manifest.json", {**pattern_fields(PowerPattern("1/2", 64)), "seed": 1}, RESULT_SETTINGS)
    with pytest.raises(RunError, match=r"attention: 'ppa:p=1/2,w=64' -> 'ppa:p=1/2,w=64,sink=4'"):
        check_manifest(tmp_path / "manifest.json", {**pattern_fields(PowerPattern("1/2", 64, 4)), "seed": 1},
                       RESULT_SETTINGS)


def test_run_names_keep_the_old_ppa_form_and_spell_out_other_patterns():
    assert run_name("m", PowerPattern("3/4", 64)) == "m__p3-4_w64"
    assert run_name("m", parse_spec("full")) == "m__p1_w0"
    assert run_name("m", PowerPattern("3/4", 64, 4)) == "m__ppa_p3-4_w64_sink4"
    assert run_name("m", parse_spec("window:w=64,sink=4")) == "m__window_w64_sink4"
    assert run_name("m", PowerAttention(64, 1, 1)) == "m__powerattention_block64_window1_sink1"
    # a fine-tuned checkpoint is named by its base's run, and its run keeps that name
    assert run_name("m__p3-4_w64", PowerPattern("3/4", 64)) == "m__p3-4_w64"
    assert run_name("m__p3-4_w64", PowerPattern("1/2", 64)) == "m__p3-4_w64__p1-2_w64"


def test_a_run_without_samples_takes_new_settings(tmp_path):
    """A start that failed (no GPU, a damaged checkpoint) wrote a manifest but computed nothing."""
    check_manifest(tmp_path / "manifest.json", {"max_new_tokens": -1}, RESULT_SETTINGS)
    check_manifest(tmp_path / "manifest.json", {"max_new_tokens": 8}, RESULT_SETTINGS)
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"max_new_tokens": 8}
    holding_a_sample(tmp_path)
    with pytest.raises(RunError, match="max_new_tokens: 8 -> 9"):
        check_manifest(tmp_path / "manifest.json", {"max_new_tokens": 9}, RESULT_SETTINGS)


def test_a_run_grows_but_does_not_shrink_and_long_context_sets_do_not_grow(tmp_path):
    path = holding_a_sample(tmp_path) / "manifest.json"
    check_manifest(path, {"limit": 4, "generated_sha256": {}}, RESULT_SETTINGS)
    check_manifest(path, {"limit": 6, "generated_sha256": {}}, RESULT_SETTINGS)
    assert json.loads(path.read_text())["limit"] == 6
    check_manifest(path, {"limit": None, "generated_sha256": {"passkey": "a"}}, RESULT_SETTINGS)  # None: all
    with pytest.raises(RunError, match="limit: None -> 6: a run may grow, not shrink"):
        check_manifest(path, {"limit": 6, "generated_sha256": {}}, RESULT_SETTINGS)
    path = holding_a_sample(tmp_path / "long") / "manifest.json"
    check_manifest(path, {"limit": 4, "generated_sha256": {"passkey": "a"}}, RESULT_SETTINGS)
    with pytest.raises(RunError, match="generated_sha256: other problems for limit 6: a long-context run cannot grow"):
        check_manifest(path, {"limit": 6, "generated_sha256": {"passkey": "b"}}, RESULT_SETTINGS)


def test_one_writer_per_run_directory(tmp_path):
    with exclusive(tmp_path / "run"):
        with pytest.raises(RunError, match="another ppa-eval is writing"):
            with exclusive(tmp_path / "run"):
                pass
    with exclusive(tmp_path / "run"):  # released
        pass


def test_a_run_made_with_other_library_versions_is_not_resumed(tmp_path):
    manifest = {"attention": "ppa:p=1/2,w=64", "versions": {"torch": "2.13.0+cpu", "transformers": "5.19.0"}}
    check_manifest(holding_a_sample(tmp_path) / "manifest.json", manifest, RESULT_SETTINGS)
    upgraded = {**manifest, "versions": {"torch": "2.13.0+cpu", "transformers": "5.20.0"}}
    with pytest.raises(RunError, match="other settings .*versions: .*'transformers': '5.19.0'.* -> .*'5.20.0'"):
        check_manifest(tmp_path / "manifest.json", upgraded, RESULT_SETTINGS)
    assert check_manifest(tmp_path / "manifest.json", dict(manifest), RESULT_SETTINGS) == []  # the same stack resumes


def test_another_torch_build_resumes_with_a_note(tmp_path):
    manifest = {"attention": "ppa:p=1/2,w=64", "versions": {"torch": "2.13.0+cpu", "transformers": "5.19.0"}}
    check_manifest(holding_a_sample(tmp_path) / "manifest.json", manifest, RESULT_SETTINGS)
    cuda = {**manifest, "versions": {"torch": "2.14.1+cu130", "transformers": "5.19.0"}}
    notes = check_manifest(tmp_path / "manifest.json", cuda, RESULT_SETTINGS)
    assert notes == [f"{tmp_path} was made with torch 2.13.0+cpu and goes on with 2.14.1+cu130"]
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest  # it still says what made the samples
