"""SoundFonts and the renderer: which SoundFont files a job uses, their checks, and one part -> audio.

``midirenderer`` (PyPI, MIT; a Rust build of rustysynth, a complete SoundFont 2 synthesizer with
its filters, envelopes, LFOs, reverb and chorus) is a self-contained abi3 wheel with no
dependencies, so ``pip install tfmusic`` is all a machine (or a Dataflow worker) needs. It renders
one part from a one-track MIDI file at 48 kHz; :mod:`tfmusic.data.synth` resamples, produces and
writes the stems. The driver checks each SoundFont once (:func:`soundfont_info`) and every worker
verifies it renders with the same bytes (:func:`check_soundfont`).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from pathlib import Path

import numpy as np

from tfmusic import storage
from tfmusic.data.synth_plan import Part

BUNDLED = "bundled"  # --soundfont value naming the TimGM6mb.sf2 that pretty_midi installs
SYSTEM_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"  # Debian's fluid-soundfont-gm
RENDER_RATE = 48_000  # midirenderer's fixed output rate
PART_MIDI_RESOLUTION = 1920  # ticks per quarter at 120 bpm: 0.26 ms, finer than the synth's 64-sample blocks
END_CONTROLLER = 110  # an undefined MIDI controller set at the song's end, so renders run to full length


def soundfont_path() -> Path:
    """TimGM6mb.sf2 from the pretty_midi package (a GM soundfont installed by pip alone)."""
    import pretty_midi

    path = Path(pretty_midi.__file__).resolve().parent / "TimGM6mb.sf2"
    if not path.is_file():
        raise FileNotFoundError(2, "pretty_midi does not ship TimGM6mb.sf2 (pretty_midi>=0.2.11 needed)", str(path))
    return path


def default_soundfonts() -> list[str | None]:
    """FluidR3 GM when Debian's fluid-soundfont-gm is installed, else the bundled TimGM6mb (None)."""
    return [SYSTEM_SOUNDFONT] if os.path.isfile(SYSTEM_SOUNDFONT) else [None]


@functools.lru_cache(maxsize=8)
def soundfont_bytes(soundfont: str | None = None) -> bytes:
    """The SoundFont's bytes (read once per process): the bundled TimGM6mb when ``soundfont`` is None,
    else the file at that local or remote (``gs://``) path."""
    if soundfont is None or soundfont == BUNDLED:
        return soundfont_path().read_bytes()
    try:
        return storage.read_bytes(soundfont)
    except storage.StorageError as err:
        raise ValueError(f"soundfont {soundfont}: file does not exist") from err


@functools.lru_cache(maxsize=64)
def sample_set_kind(source: str | None) -> str:
    """``"sf2"`` for a SoundFont file, ``"hydrogen"`` for a recorded drum kit folder
    (:mod:`tfmusic.data.drumkits`), ``"gus"`` for a GUS patch bank folder (:mod:`tfmusic.data.patches`),
    ``"multisample"`` for a folder of recorded notes per velocity layer (:mod:`tfmusic.data.multisamples`)."""
    from tfmusic.data import drumkits, multisamples, patches

    if source in (None, BUNDLED) or not storage.is_dir(source):
        return "sf2"
    if drumkits.is_kit(source):
        return "hydrogen"
    if patches.is_bank(source):
        return "gus"
    if multisamples.is_multisample_set(source):
        return "multisample"
    raise ValueError(f"{source}: a folder that is neither a Hydrogen drum kit (drumkit.xml), a GUS patch bank "
                     f"(Tone_000/*.pat) nor a multi-sampled instrument ({multisamples.MARKER})")


def is_drum_kit(source: str | None) -> bool:
    """True when a drum source is a recorded Hydrogen kit folder rather than a SoundFont file."""
    return sample_set_kind(source) == "hydrogen"


def render_samples(source: str, part: Part, seconds: float, sample_rate: int) -> np.ndarray:
    """One part from a recorded sample set (kit or patch bank) at ``sample_rate``: float32 ``(2, n)``."""
    from tfmusic.data import drumkits, multisamples, patches

    kind = sample_set_kind(source)
    if kind == "hydrogen":
        return drumkits.render_kit(source, part.notes, seconds, sample_rate)
    if kind == "multisample":
        return multisamples.render_set(source, part.notes, seconds, sample_rate)
    return patches.render_bank(source, part.program, part.is_drum, part.notes, seconds, sample_rate)


@functools.lru_cache(maxsize=8)
def _soundfont_sha256(soundfont: str | None) -> str:
    from tfmusic.data import drumkits, multisamples, patches

    kind = sample_set_kind(soundfont)
    if kind == "hydrogen":
        return drumkits.kit_sha256(soundfont)
    if kind == "multisample":
        return multisamples.set_sha256(soundfont)
    if kind == "gus":
        return patches.bank_sha256(soundfont)
    return hashlib.sha256(soundfont_bytes(soundfont)).hexdigest()


def soundfont_name(soundfont: str | None = None) -> str:
    return soundfont_path().name if soundfont in (None, BUNDLED) else storage.basename(soundfont)


def soundfont_info(soundfont: str | None = None) -> dict:
    """Check a sample set before a job starts; returns its name, sha256 (checked by every worker) and,
    for the sets :mod:`tfmusic.data.sample_sets` lists, package, licence and role: the manifest's record."""
    from tfmusic.data import drumkits, multisamples, patches, sample_sets

    kind = sample_set_kind(soundfont)
    if kind == "hydrogen":
        info = drumkits.kit_info(soundfont)
    elif kind == "multisample":
        info = multisamples.set_info(soundfont)
    elif kind == "gus":
        info = patches.bank_info(soundfont)
    else:
        info = _sf2_info(soundfont)
    entry = sample_sets.known(soundfont)
    if entry is not None:
        info.update(package=entry.package, license=info.get("license") or entry.license, role=entry.role)
        if kind == "hydrogen":  # Debian's copyright file is the authority; the kit's own words are kept
            info.update(license=entry.license, kit_license_text=drumkits.load_kit(soundfont).license)
    return info


def _sf2_info(soundfont: str | None) -> dict:
    """A SoundFont's check: exists, SoundFont 2, renders a note."""
    data = soundfont_bytes(soundfont)
    name = soundfont_name(soundfont)
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise ValueError(f"soundfont {soundfont or name}: not a SoundFont 2 file (no RIFF 'sfbk' header)")
    probe = Part("piano", "piano", 0, False, 0.0, 0.0, "probe", [(0.0, 0.25, 60, 100)])
    try:
        audio = _render_48k(probe, 0.5, data)
    except Exception as err:  # the renderer's own message (e.g. "SoundFont3 is not yet supported")
        raise ValueError(f"soundfont {soundfont or name}: the renderer cannot use it ({err})") from err
    if not np.abs(audio).max() > 0:
        raise ValueError(f"soundfont {soundfont or name}: renders silence for GM program 0 (piano)")
    return {"name": name, "kind": "sf2", "bytes": len(data), "sha256": _soundfont_sha256(soundfont)}


def renderer_version() -> str:
    from importlib.metadata import version

    return f"midirenderer {version('midirenderer')} (rustysynth)"


def part_midi(part: Part, seconds: float) -> bytes:
    """One stem as a one-track MIDI file (120 bpm, fine ticks) that lasts ``seconds``."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(resolution=PART_MIDI_RESOLUTION, initial_tempo=120.0)
    inst = pretty_midi.Instrument(program=part.program, is_drum=part.is_drum)
    inst.notes = [pretty_midi.Note(velocity=v, pitch=p, start=s, end=e) for s, e, p, v in part.notes]
    inst.control_changes.append(pretty_midi.ControlChange(number=END_CONTROLLER, value=0, time=float(seconds)))
    pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def _render_48k(part: Part, seconds: float, sf2: bytes) -> np.ndarray:
    """The renderer's output for one part: float32 ``(2, samples)`` at 48 kHz."""
    import midirenderer
    import soundfile as sf

    wav = midirenderer.render_wave_from(sf2, part_midi(part, seconds))
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    if rate != RENDER_RATE:
        raise RuntimeError(f"midirenderer rendered at {rate} Hz, expected {RENDER_RATE} Hz")
    if audio.shape[1] == 1:
        audio = np.repeat(audio, 2, axis=1)
    return np.ascontiguousarray(audio.T)


def check_soundfont(soundfont: str | None, sha256: str | None) -> None:
    """Fail (the whole job) when this worker's SoundFont differs from the one the driver checked."""
    if sha256 is None:
        return
    got = _soundfont_sha256(soundfont)
    if got != sha256:
        raise RuntimeError(f"soundfont {soundfont or soundfont_name(None)} on this worker has sha256 {got}, "
                           f"the driver checked {sha256} (install the same pretty_midi / use a gs:// soundfont)")
