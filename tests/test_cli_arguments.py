"""Out-of-range numeric options end in a one-line error and exit 2, never a traceback or a silent wrap."""
import pytest

from tfmusic.cli.main import main

BAD = [
    (["serve", "--models", ".", "--port", "70000"], "outside 0..65535"),
    (["serve", "--models", ".", "--rest-port", "-1"], "outside 0..65535"),
    (["dmelodies", "generate", "--out", "OUT", "--limit", "0"], "limit must lie in"),
    (["dmelodies", "generate", "--out", "OUT", "--num-shards", "0,1,1"], "shard counts must be >= 1"),
    (["data", "synthesize", "--out", "OUT", "--songs", "0"], "songs must be >= 1"),
    (["data", "preprocess", "--input", "IN", "--out", "OUT", "--splits", "1,1"], "three non-negative shares"),
    (["separate", "song.wav", "--model", "m", "--chunk-seconds", "0"], "--chunk-seconds > 0"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a[:2]) + " " + a[-2] for a, _ in BAD])
def test_bad_numbers_fail_cleanly(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse type errors
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "OUT").exists()
