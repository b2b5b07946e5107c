"""GUS patch banks (freepats): the .pat reader, the sampler's pitch and loop, bank lookup, dispatch."""

import struct

import numpy as np
import pytest

from tfmusic.data import patches, soundfonts

RATE = 44_100


def _pat(samples: list[dict]) -> bytes:
    """A GUS patch file: the file, instrument and layer headers, then each sample's header and 16-bit PCM."""
    head = b"GF1PATCH110\0ID#000002\0".ljust(82, b"\0") + bytes([1, 14, 0]) + struct.pack("<HHI", 1, 127, 0)
    head = head.ljust(129, b"\0")
    head += struct.pack("<H16sIB", 0, b"Test", 0, 1).ljust(63, b"\0")
    head += struct.pack("<BBIB", 0, 0, 0, len(samples)).ljust(47, b"\0")
    body = b""
    for s in samples:
        pcm = (s["data"] * 32767).astype("<i2").tobytes()
        loop = s.get("loop", (0, 0))
        hdr = struct.pack("<7sBIIIHIII", b"smp", 0, len(pcm), loop[0] * 2, loop[1] * 2, s["rate"],
                          int(s["low"] * 1000), int(s["high"] * 1000), int(s["root"] * 1000))
        hdr += struct.pack("<hB", 0, 7) + bytes(12) + bytes(6) + bytes([1 | (4 if "loop" in s else 0)])
        body += hdr.ljust(96, b"\0") + pcm
    return head + body


def _sine(freq, seconds, rate=RATE):
    return np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate).astype(np.float32) * 0.5


@pytest.fixture()
def bank(tmp_path):
    """A bank with program 33 (two key ranges: 55 Hz and 110 Hz roots, the low one looped) and drum note 36."""
    tones, drums = tmp_path / "Tone_000", tmp_path / "Drum_000"
    tones.mkdir()
    drums.mkdir()
    period = RATE // 55 * 4  # a whole number of cycles of a 55-ish Hz tone... loop on exact cycles
    low = _sine(RATE / (RATE // 55), 0.2)
    (tones / "033_Finger_Bass.pat").write_bytes(_pat([
        {"data": low, "rate": RATE, "low": 20, "high": 80, "root": RATE / (RATE // 55), "loop": (0, period)},
        {"data": _sine(110, 1.0), "rate": RATE, "low": 80, "high": 400, "root": 110}]))
    (drums / "036_Kick.pat").write_bytes(_pat([{"data": _sine(60, 0.3), "rate": RATE, "low": 8, "high": 12000,
                                                "root": 261.6}]))
    for fn in (patches.bank_files, patches.load_patch, patches.bank_sha256, soundfonts.sample_set_kind):
        fn.cache_clear()
    return str(tmp_path)


def _peak_hz(audio):
    x = audio.mean(axis=0)
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / RATE)[np.argmax(spec)])


def test_reader_parses_headers_and_pcm(bank):
    samples = patches.load_patch(f"{bank}/Tone_000/033_Finger_Bass.pat")
    assert len(samples) == 2
    assert samples[1].root_hz == pytest.approx(110) and samples[1].loop is None
    assert samples[0].loop is not None and samples[0].data.size == int(0.2 * RATE)
    np.testing.assert_allclose(samples[1].data, _sine(110, 1.0), atol=1e-4)
    with pytest.raises(ValueError, match="not a GUS patch"):
        patches.parse_patch(b"RIFF" + bytes(200), "x.pat")


def test_sampler_plays_the_note_pitch_and_loops_while_held(bank):
    a2 = patches.render_bank(bank, 33, False, [(0.0, 0.9, 45, 100)], 1.0, RATE)  # A2 = 110 Hz: the 2nd sample
    assert _peak_hz(a2[:, : int(0.8 * RATE)]) == pytest.approx(110, abs=2)
    e3 = patches.render_bank(bank, 33, False, [(0.0, 0.5, 52, 100)], 1.0, RATE)  # E3 = 164.8 Hz, transposed
    assert _peak_hz(e3[:, : int(0.45 * RATE)]) == pytest.approx(164.8, abs=3)
    held = patches.render_bank(bank, 33, False, [(0.0, 1.5, 33, 100)], 2.0, RATE)  # A1 = 55 Hz on a 0.2 s sample
    late = held[:, int(1.0 * RATE): int(1.4 * RATE)]
    assert np.abs(late).max() > 0.2  # the loop sustains it
    assert _peak_hz(late) == pytest.approx(55, abs=2)
    assert np.abs(held[:, int(1.9 * RATE):]).max() < 0.05  # released


def test_bank_lookup_falls_back_to_the_family_and_plays_drums(bank):
    assert patches.patch_for(bank, 34).endswith("033_Finger_Bass.pat")  # same family (basses 32-39)
    assert patches.patch_for(bank, 0).endswith("033_Finger_Bass.pat")  # nearest overall
    kick = patches.render_bank(bank, 0, True, [(0.0, 0.1, 36, 127)], 0.5, RATE)
    assert _peak_hz(kick[:, : int(0.25 * RATE)]) == pytest.approx(60, abs=4)  # drums play unpitched
    assert not patches.render_bank(bank, 0, True, [(0.0, 0.1, 38, 127)], 0.5, RATE).any()  # no patch: silence


def test_sample_set_kind_dispatch(bank, tmp_path_factory):
    assert soundfonts.sample_set_kind(bank) == "gus"
    assert soundfonts.sample_set_kind("bundled") == "sf2"
    info = soundfonts.soundfont_info(bank)
    assert info["kind"] == "GUS patch bank" and info["programs"] == 1 and len(info["sha256"]) == 64
    empty = str(tmp_path_factory.mktemp("empty"))
    with pytest.raises(ValueError, match="neither a Hydrogen drum kit"):
        soundfonts.sample_set_kind(empty)
