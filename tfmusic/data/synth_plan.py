"""The arrangements of the synthesized multitrack songs: what each instrument plays, decided per seed.

Two kinds of material: procedurally composed songs in ten popular styles
(:mod:`tfmusic.data.compose`: grooves, bass lines, comping, sung or played leads), and music21 Bach
chorales (four real voices for vocals, piano, guitars or other instruments, with generated bass and
drums). Every part is humanized (timing, swing, velocity); programs, tempo, SoundFont and the
per-stem mixing chain (:mod:`tfmusic.data.mixing`) are drawn per song, and instruments are muted
per section, so they enter and leave. Everything derives from ``(seed, index)``, so a song is the
same whichever worker plans it. Rendering is :mod:`tfmusic.data.synth`.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tfmusic.data import compose, mixing
from tfmusic.data.stems import taxonomy as tx

DEFAULT_SECONDS = 20.0
CHORALE_SHARE = 0.25  # share of songs arranged from Bach chorales; the rest are composed in a genre
DRUM_KIT_SHARE = 0.5  # chance that a song's drums come from a drum-only kit (when the job has any)
PIANO_SAMPLE_SHARE = 0.5  # chance that a song's piano is a recorded multi-sampled piano (when the job has any)
SAMPLE_RATES = (22_050, 44_100)
SECTION_BEATS = 8  # two 4/4 bars per section: the unit in which instruments are muted

# (GM program, MedleyDB label) per taxonomy instrument; drums use bank 128 on GM channel 10.
PROGRAMS: dict[str, tuple[tuple[int, str], ...]] = {
    tx.VOCALS: ((52, "choir"), (53, "vocalists"), (54, "vocalists"), (85, "vocalists")),
    tx.PIANO: ((0, "piano"), (1, "piano"), (2, "piano"), (4, "electric piano"), (5, "electric piano")),
    tx.ELECTRIC_GUITAR: ((26, "clean electric guitar"), (27, "clean electric guitar"),
                         (28, "clean electric guitar"), (29, "distorted electric guitar"),
                         (30, "distorted electric guitar")),
    tx.ACOUSTIC_GUITAR: ((24, "acoustic guitar"), (25, "acoustic guitar")),
    tx.BASS: ((32, "double bass"), (33, "electric bass"), (34, "electric bass"), (35, "electric bass"),
              (36, "electric bass"), (37, "electric bass"), (38, "synth bass"), (39, "synth bass")),
    tx.OTHER: ((48, "string section"), (49, "string section"), (40, "violin"), (42, "cello"),
               (71, "clarinet"), (73, "flute"), (56, "trumpet"), (61, "brass section"), (65, "alto saxophone"),
               (66, "tenor saxophone"), (81, "synthesizer"), (89, "synthesizer"), (50, "synthesizer"),
               (11, "vibraphone"), (16, "organ"), (17, "organ"), (18, "organ"), (19, "pipe organ"),
               (21, "accordion")),
    tx.DRUMS: ((0, "drum set"), (8, "drum set"), (16, "drum set"), (24, "drum machine"),
               (25, "drum machine"), (32, "drum set"), (40, "drum set")),
}
# Probability that a song includes each instrument (the song's focus instrument is always in).
INCLUDE_P = {tx.VOCALS: 0.6, tx.DRUMS: 0.7, tx.BASS: 0.8, tx.PIANO: 0.5, tx.ELECTRIC_GUITAR: 0.4,
             tx.ACOUSTIC_GUITAR: 0.4, tx.OTHER: 0.5}


@functools.lru_cache(maxsize=1)
def chorale_paths() -> tuple[str, ...]:
    """Bach chorale scores of the offline music21 corpus, in a fixed order."""
    from music21 import corpus

    paths = sorted(str(p) for p in corpus.getComposer("bach") if str(p).endswith((".mxl", ".xml")))
    if not paths:
        raise RuntimeError("music21 corpus holds no Bach scores (is the music21 corpus installed?)")
    return tuple(paths)


@functools.lru_cache(maxsize=64)
def chorale_voices(path: str) -> tuple[tuple[tuple[tuple[float, float, int], ...], ...], float] | None:
    """The four voices of a chorale as ``(offset_q, duration_q, midi)`` notes, and its length in quarters.

    Returns None when the score does not have exactly four parts with notes.
    """
    from music21 import converter

    score = converter.parse(path)
    if len(score.parts) != 4:
        return None
    voices = []
    length = 0.0
    for part in score.parts:
        flat = part.stripTies().flatten()
        notes = []
        for n in flat.notes:
            dur = float(n.quarterLength)
            if dur <= 0:
                continue
            for p in n.pitches:
                notes.append((float(n.offset), dur, int(p.midi)))
        if not notes:
            return None
        voices.append(tuple(sorted(notes)))
        length = max(length, float(flat.highestTime))
    return tuple(voices), length


@dataclass
class Part:
    """One stem: a taxonomy instrument played by one GM program, with its exact notes."""

    instrument: str
    label: str
    program: int
    is_drum: bool
    gain_db: float
    pan: float
    role: str
    notes: list[tuple[float, float, int, int]] = field(default_factory=list)  # start s, end s, pitch, velocity
    chain: mixing.StemChain | None = None  # None: the dry render, only gain and pan


@dataclass
class SongPlan:
    name: str
    seed: int
    index: int
    seconds: float
    sample_rate: int
    tempo_bpm: float
    source: str
    sections: int
    parts: list[Part]
    genre: str = "chorale"
    soundfont: int = 0  # index into the job's SoundFonts
    drum_soundfont: int = -1  # index into the job's drum-only SoundFonts; -1: the song's SoundFont
    piano_samples: int = -1  # index into the job's recorded pianos (tfmusic.data.multisamples); -1: the SoundFont
    mixing: str = "dry"
    mix_lufs: float = -14.0


def _chord_at(voices, t_q: float) -> list[int]:
    pitches = []
    for voice in voices:
        for off, dur, midi in voice:
            if off <= t_q < off + dur:
                pitches.append(midi)
    return sorted(set(pitches))


def _looped(voice, length_q: float, total_q: float):
    out, k = [], 0
    while k * length_q < total_q:
        for off, dur, midi in voice:
            start = off + k * length_q
            if start < total_q:
                out.append((start, min(dur, total_q - start), midi))
        k += 1
    return out


def _drum_pattern(rng: np.random.Generator, total_beats: int, spq: float) -> list[tuple[float, float, int, int]]:
    """A generated GM drum part: kick/snare backbeat, hats or ride in eighths, fills and crashes."""
    style = rng.integers(3)
    hat = (42, 42, 51)[style]
    notes = []
    for beat in range(total_beats):
        t = beat * spq
        pos = beat % 4
        if pos in (0, 2) or (style == 2 and rng.random() < 0.25):
            notes.append((t, t + 0.1, 36, int(rng.integers(95, 120))))
        if pos in (1, 3):
            notes.append((t, t + 0.1, 38, int(rng.integers(90, 115))))
        for half in (0.0, 0.5):
            if style != 1 or half == 0.0 or rng.random() < 0.7:
                notes.append((t + half * spq, t + half * spq + 0.05, hat, int(rng.integers(55, 85))))
        if beat % SECTION_BEATS == 0:
            notes.append((t, t + 0.5, 49, int(rng.integers(80, 110))))
        if beat % SECTION_BEATS == SECTION_BEATS - 1 and rng.random() < 0.5:
            for k, tom in enumerate((50, 47, 45)):
                notes.append((t + k * spq / 3, t + k * spq / 3 + 0.1, tom, int(rng.integers(85, 110))))
    return notes


def _bass_line(rng: np.random.Generator, bass_voice, total_q: float, spq: float) -> list[tuple[float, float, int, int]]:
    """A generated bass part following the chorale bass: quarters, eighths or root-fifth."""
    pattern = rng.integers(3)
    base_vel = int(rng.integers(80, 110))
    notes = []
    beat = 0
    while beat < total_q:
        chord = [m for off, dur, m in bass_voice if off <= beat < off + dur]
        if chord:
            root = chord[0]
            while root > 52:
                root -= 12
            while root < 28:
                root += 12
            if pattern == 0:
                hits = [(0.0, 0.95, root)]
            elif pattern == 1:
                hits = [(0.0, 0.45, root), (0.5, 0.45, root)]
            else:
                hits = [(0.0, 0.45, root), (0.5, 0.45, root + 7 if root + 7 <= 55 else root - 5)]
            for off, dur, pitch in hits:
                start = (beat + off) * spq
                notes.append((start, start + dur * spq, pitch, base_vel + int(rng.integers(-8, 9))))
        beat += 1
    return notes


def _comp(rng: np.random.Generator, voices, total_q: float, spq: float, strum: bool,
          low: int, high: int) -> list[tuple[float, float, int, int]]:
    """Chords from the four voices: sustained, repeated on beats, or arpeggiated; optionally strummed."""
    style = rng.integers(3)
    step = (2.0, 1.0, 0.5)[style]
    base_vel = int(rng.integers(65, 100))
    notes = []
    t = 0.0
    i = 0
    while t < total_q:
        chord = [p for p in _chord_at(voices, t) if low <= p <= high]
        if not chord:
            chord = [p + 12 * int(np.ceil((low - p) / 12)) for p in _chord_at(voices, t)]
            chord = [p for p in chord if low <= p <= high]
        if style == 2 and chord:
            chord = [chord[i % len(chord)]]
        for k, pitch in enumerate(chord):
            start = t * spq + (k * 0.012 if strum else 0.0)
            notes.append((start, (t + step * 0.95) * spq, pitch, base_vel + int(rng.integers(-6, 7))))
        t += step
        i += 1
    return notes


def _voice_notes(rng: np.random.Generator, voice, spq: float, transpose: int) -> list[tuple[float, float, int, int]]:
    base_vel = int(rng.integers(70, 105))
    return [(off * spq, (off + dur) * spq * 0.999, midi + transpose, base_vel + int(rng.integers(-6, 7)))
            for off, dur, midi in voice]


def plan_song(seed: int, index: int, seconds: float = DEFAULT_SECONDS, sample_rate: int = 44_100, *,
              soundfonts: int = 1, drum_soundfonts: int = 0, mixing_style: str = "standard",
              genres: tuple[str, ...] | None = None, chorale_share: float = CHORALE_SHARE,
              drum_kit_share: float = DRUM_KIT_SHARE, piano_sets: int = 0,
              piano_sample_share: float = PIANO_SAMPLE_SHARE) -> SongPlan:
    """The arrangement of song ``index`` for ``seed``: instruments, programs, exact notes, mix settings.

    Song ``index`` always includes the IASS instrument ``IASS_INSTRUMENTS[index % 6]``, so any six
    consecutive songs cover vocals, drums, bass, both guitars and piano. ``soundfonts`` and
    ``drum_soundfonts`` are how many the job renders with (the plan picks one of each by index);
    ``genres`` restricts the composed styles (default: all of :data:`compose.GENRE_NAMES`);
    ``drum_kit_share`` is the chance that the drums are played by one of the drum-only kits, and
    ``piano_sample_share`` that the piano is one of the ``piano_sets`` recorded pianos (drawn from a
    stream of their own, so a job without recorded pianos plans exactly the songs it always did).
    """
    rng = np.random.default_rng([int(seed), int(index)])
    pool = [compose.genre_by_name(g) for g in (genres or compose.GENRE_NAMES)]
    use_chorale = rng.random() < chorale_share
    genre = pool[int(rng.integers(len(pool)))]
    focus = tx.IASS_INSTRUMENTS[index % len(tx.IASS_INSTRUMENTS)]
    chosen = [inst for inst in tx.INSTRUMENTS if inst == focus or rng.random() < INCLUDE_P[inst]]
    while len(chosen) < 3:
        extra = [i for i in tx.INSTRUMENTS if i not in chosen]
        chosen.append(extra[int(rng.integers(len(extra)))])
    chosen = [inst for inst in tx.INSTRUMENTS if inst in chosen]
    if use_chorale:
        tempo, source, arranged = _arrange_chorale(rng, chosen, seconds)
    else:
        tempo = float(rng.uniform(*genre.tempo))
        source = f"composed: {genre.name}"
        arranged = compose.compose(rng, genre, chosen, seconds, tempo)
    spq = 60.0 / tempo

    parts: list[Part] = []
    labels = {inst: dict(progs) for inst, progs in PROGRAMS.items()}
    for k, inst in enumerate(chosen):
        role, notes = arranged[inst]
        preferred = (genre.kits if inst == tx.DRUMS else genre.programs.get(inst, ())) if not use_chorale else ()
        if preferred and rng.random() < 0.75:
            program = int(preferred[int(rng.integers(len(preferred)))])
        else:
            program = int(PROGRAMS[inst][int(rng.integers(len(PROGRAMS[inst])))][0])
        gain_db = float(rng.uniform(-6.0, 0.0))
        chain = (None if mixing_style == "dry"
                 else mixing.draw_chain(np.random.default_rng([int(seed), int(index), 7, k]), inst, mixing_style))
        pan = chain.pan if chain is not None else float(rng.uniform(-1, 1) * mixing.PAN_WIDTH[inst])
        parts.append(Part(inst, labels[inst][program], program, inst == tx.DRUMS, gain_db, pan, role, notes, chain))

    # Sections: each part is muted in some sections so instruments enter and leave.
    section_s = SECTION_BEATS * spq
    n_sections = max(1, int(np.ceil(seconds / section_s)))
    masks = rng.random((len(parts), n_sections)) < 0.75
    for i, part in enumerate(parts):
        if n_sections >= 3 and masks[i].all() and rng.random() < 0.6:
            masks[i, int(rng.integers(n_sections))] = False
        if not masks[i].any():
            masks[i, int(rng.integers(n_sections))] = True
    if not masks[:, 0].any():
        masks[int(rng.integers(len(parts))), 0] = True
    end_s = seconds - 0.05
    for i, part in enumerate(parts):
        kept = []
        for start, end, pitch, vel in part.notes:
            sec = int(start // section_s)
            if start >= end_s or sec >= n_sections or not masks[i, sec]:
                continue
            end = min(end, (sec + 1) * section_s, end_s)
            if end - start > 0.01:
                kept.append((round(start, 6), round(end, 6), int(np.clip(pitch, 0, 127)), int(np.clip(vel, 1, 127))))
        part.notes = sorted(kept)
    parts = [p for p in parts if p.notes]
    name = song_name(seed, index)
    soundfont = int(rng.integers(max(1, soundfonts)))
    drum_soundfont = int(rng.integers(drum_soundfonts)) if drum_soundfonts and rng.random() < drum_kit_share else -1
    piano_rng = np.random.default_rng([int(seed), int(index), 11])
    piano_samples = (int(piano_rng.integers(piano_sets)) if piano_sets and piano_rng.random() < piano_sample_share
                     else -1)
    return SongPlan(name, int(seed), int(index), float(seconds), int(sample_rate), round(tempo, 3),
                    source, n_sections, parts, genre="chorale" if use_chorale else genre.name,
                    soundfont=soundfont, drum_soundfont=drum_soundfont, piano_samples=piano_samples,
                    mixing=mixing_style,
                    mix_lufs=round(float(rng.uniform(*mixing.MIX_LUFS)), 2))


def _arrange_chorale(rng: np.random.Generator, chosen: list[str], seconds: float):
    """A Bach chorale arranged for ``chosen``: ``(tempo, source file, {instrument: (role, notes)})``."""
    paths = chorale_paths()
    start = int(rng.integers(len(paths)))
    for k in range(len(paths)):
        path = paths[(start + k) % len(paths)]
        parsed = chorale_voices(path)
        if parsed is not None:
            break
    else:
        raise RuntimeError("no four-part chorale found in the music21 corpus")
    voices, length_q = parsed
    tempo = float(rng.uniform(72, 132))
    spq = 60.0 / tempo
    total_q = seconds / spq
    looped = [_looped(v, length_q, total_q) for v in voices]
    soprano, alto, tenor, bass_voice = looped
    total_beats = int(np.ceil(total_q))
    arranged = {}
    for inst in chosen:
        if inst == tx.DRUMS:
            notes, role = _drum_pattern(rng, total_beats, spq), "generated drums"
        elif inst == tx.BASS:
            notes, role = _bass_line(rng, bass_voice, total_q, spq), "generated bass"
        elif inst == tx.VOCALS:
            both = rng.random() < 0.5
            notes = _voice_notes(rng, soprano, spq, 0) + (_voice_notes(rng, alto, spq, 0) if both else [])
            role = "soprano+alto" if both else "soprano"
        elif inst in (tx.PIANO, tx.ACOUSTIC_GUITAR) or (inst == tx.ELECTRIC_GUITAR and rng.random() < 0.6):
            strum = inst != tx.PIANO
            notes = _comp(rng, looped, total_q, spq, strum, 40 if strum else 48, 76 if strum else 84)
            role = "chords"
        else:
            voice, role = ((tenor, "tenor") if rng.random() < 0.5 else (alto, "alto"))
            if tx.VOCALS not in chosen and rng.random() < 0.5:
                voice, role = soprano, "soprano"
            notes = _voice_notes(rng, voice, spq, 12 if inst == tx.ELECTRIC_GUITAR and role == "tenor" else 0)
        timing = 0.004 if inst == tx.DRUMS else 0.010
        arranged[inst] = (role, compose.humanize(notes, rng, spq / 4, timing_sd=timing))
    return tempo, Path(path).name, arranged


def song_name(seed: int, index: int) -> str:
    return f"Synth_s{int(seed)}_{int(index):04d}"


def plan_summary(plan: SongPlan) -> dict:
    """JSON-friendly description of a plan (without the notes) for logs and tests."""
    d = asdict(plan)
    for part in d["parts"]:
        part["notes"] = len(part["notes"])
    return d
