from fractions import Fraction

import pytest

from ppa_eval.checkpoints import CheckpointError, content_sha256, discover, power_from_name, resolve_pattern
from ppa_eval.patterns import PowerAttention, PowerPattern


@pytest.mark.parametrize("name, power", [
    ("p0.75", Fraction(3, 4)), ("ppa-0.875", Fraction(7, 8)), ("p=0.5", Fraction(1, 2)), ("swa", 0),
    ("sliding-window", 0), ("full", 1), ("full_attention", 1), ("nemotron-p0.5-run2", Fraction(1, 2)),
    ("p1", 1), ("model-c", None), ("ppa_0_5", None), ("step100", None), ("p3-4", None),
])
def test_power_from_name(name, power):
    assert power_from_name(name) == power


def test_a_name_with_two_powers_is_reported():
    with pytest.raises(CheckpointError, match="several powers"):
        power_from_name("p0.5-full")


def test_discover_orders_by_power_and_reports_what_it_skips(tmp_path):
    for name, config in [("full", "{}"), ("p0.25", "{}"), ("b", '{"ppa_power": "1/8"}'), ("nothing", "{}"),
                         ("p0.5", '{"ppa_power": 0.75}')]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(config)
    found, skipped = discover(tmp_path)
    assert [(c.name, c.pattern.power, c.pattern.window) for c in found] == [
        ("b", Fraction(1, 8), 64), ("p0.25", Fraction(1, 4), 64), ("full", 1, 64)]
    assert len(skipped) == 2
    assert any("nothing" in s and "no ppa_attention or ppa_power" in s for s in skipped)
    assert any("p0.5" in s and "config says p=3/4 but its name says p=1/2" in s for s in skipped)


def test_resolve_pattern_reads_both_config_shapes(tmp_path):
    (tmp_path / "config.json").write_text('{"ppa": {"power": "1/3", "window": 16}}')
    assert (resolve_pattern(tmp_path, None, None).power, resolve_pattern(tmp_path, None, None).window) == (Fraction(1, 3), 16)
    assert resolve_pattern(tmp_path, "0.5", "8", force=True).window == 8


def test_resolve_pattern_reads_the_spec_key_and_checks_flags_against_it(tmp_path):
    (tmp_path / "config.json").write_text('{"ppa_attention": "ppa:p=1/2,w=16,sink=4"}')
    assert resolve_pattern(tmp_path) == PowerPattern("1/2", 16, 4)
    assert resolve_pattern(tmp_path, window="16") == PowerPattern("1/2", 16, 4)  # agrees: no --force needed
    # --power changes p only: the config's window and sink stay
    assert resolve_pattern(tmp_path, "3/4", force=True) == PowerPattern("3/4", 16, 4)
    with pytest.raises(CheckpointError, match=r"ppa:p=3/4,w=16,sink=4, which contradicts ppa:p=1/2,w=16,sink=4.*--force"):
        resolve_pattern(tmp_path, "3/4")
    spec = "powerattention:block=32,window=1,sink=1"
    assert resolve_pattern(tmp_path, attention=spec, force=True) == PowerAttention(32, 1, 1)
    with pytest.raises(CheckpointError, match="not both"):
        resolve_pattern(tmp_path, "1/2", attention=spec)


def test_window_alone_needs_a_ppa_to_change(tmp_path):
    (tmp_path / "config.json").write_text('{"ppa_attention": "powerattention:block=64,window=1,sink=1"}')
    assert resolve_pattern(tmp_path) == PowerAttention(64, 1, 1)
    with pytest.raises(CheckpointError, match="names powerattention:block=64,window=1,sink=1; pass --power P too"):
        resolve_pattern(tmp_path, window="8")
    (tmp_path / "config.json").write_text('{"ppa_attention": "full", "ppa_power": "1/2"}')
    with pytest.raises(CheckpointError, match="keep only ppa_attention"):
        resolve_pattern(tmp_path)


def test_discover_takes_every_family_and_orders_ppa_first(tmp_path):
    for name, config in [("pa", '{"ppa_attention": "powerattention:block=16,window=1,sink=1"}'),
                         ("sink", '{"ppa_attention": "window:w=64,sink=4"}'), ("p0.5", '{"ppa_attention": "ppa:p=1/2"}'),
                         ("p0.75", '{"ppa_attention": "ppa:p=1/2"}')]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(config)
    found, skipped = discover(tmp_path)
    assert [(c.name, c.pattern) for c in found] == [
        ("sink", PowerPattern(0, 64, 4)), ("p0.5", PowerPattern("1/2", 64)), ("pa", PowerAttention(16, 1, 1))]
    assert len(skipped) == 1 and "p0.75" in skipped[0] and "config says p=1/2 but its name says p=3/4" in skipped[0]


def test_nested_checkpoints_whose_run_names_collide_are_refused(tmp_path):
    for nested in ("a/b_final", "a_b/final"):
        (tmp_path / nested).mkdir(parents=True)
        (tmp_path / nested / "config.json").write_text('{"ppa_power": "1/2"}')
    with pytest.raises(CheckpointError, match="would share the run name 'a_b_final'"):
        discover(tmp_path)


def test_content_hash_is_cached_by_path_size_and_mtime(tmp_path, monkeypatch):
    import hashlib
    import os

    monkeypatch.setenv("PPA_EVAL_CACHE", str(tmp_path / "cache"))
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    (checkpoint / "weights.bin").write_bytes(b"\x01" * 1000)

    def by_hand():
        digest = hashlib.sha256()
        for name in ("config.json", "weights.bin"):
            digest.update(name.encode() + b"\0" + (checkpoint / name).read_bytes())
        return digest.hexdigest()

    first = content_sha256(checkpoint)
    assert first == by_hand()
    cached = next((tmp_path / "cache" / "hashes").iterdir())
    cached.write_text("served from the cache\n")  # a second call with unchanged files reads it back
    assert content_sha256(checkpoint) == "served from the cache"
    (checkpoint / "weights.bin").write_bytes(b"\x02" * 1000)  # same size, new content and mtime
    os.utime(checkpoint / "weights.bin", ns=(1, 1))
    assert content_sha256(checkpoint) == by_hand() != first
