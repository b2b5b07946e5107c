"""Procedurally composed songs in popular-music styles, and humanized performance of any notes.

The chorale arrangements of :mod:`tfmusic.data.synth_plan` give real voice leading but one style;
separation models trained only on them do not meet the drum grooves, syncopated bass lines,
comping rhythms and sung leads of real productions. Here a song is composed from a genre template:
a key and a chord progression, a drum groove on a 16-step grid (kick, snare, hats/ride, ghost notes,
fills, crashes), a bass line of the genre's kind (root/octave eighths, walking quarters,
syncopated funk), chord comping (sustained, stabs, off-beat skanks, arpeggios, strums) and a lead
melody built from chord tones on strong beats and scale steps between them.

:func:`humanize` then plays the notes like a musician: per-note timing jitter, a per-part lag
(laid back or pushing), swing on off-beat sixteenths/eighths, and velocity accents and variation.
The humanized notes are the notes that are rendered and written to the song's MIDI file, so labels
stay exact. Everything derives from the ``rng`` the plan passes in: same seed, same song.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfmusic.data.stems import taxonomy as tx

Note = tuple[float, float, int, int]  # start s, end s, MIDI pitch, velocity

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
# Progressions as scale degrees (0-based) of the key's scale, one chord per bar.
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (5, 3, 0, 4), (0, 3, 4, 3), (0, 5, 3, 4), (1, 4, 0, 0), (0, 0, 3, 4)),
    "minor": ((0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 2, 6), (0, 3, 4, 0), (0, 0, 5, 4)),
}
BLUES = (0, 3, 0, 0, 3, 3, 0, 0, 4, 3, 0, 4)  # twelve-bar, degrees of the major scale


@dataclass(frozen=True)
class Genre:
    """A style template: tempo, swing, groove (16-step grids) and how each instrument plays."""

    name: str
    tempo: tuple[float, float]
    swing: float  # 0 = straight; 0.33 = triplet swing of the off-beat subdivision
    kick: tuple[int, ...]
    snare: tuple[int, ...]
    hats: tuple[int, ...]
    hat_note: int  # 42 closed hat, 51 ride, 46 open hat
    bass: str  # "eighths", "octaves", "walking", "syncopated", "long", "onedrop"
    comp: str  # "sustain", "stabs", "skank", "arpeggio", "strum", "power"
    kits: tuple[int, ...]  # GM drum-kit programs
    programs: dict[str, tuple[int, ...]]  # preferred GM programs per instrument
    mode: str = "major"
    blues: bool = False


GENRES: tuple[Genre, ...] = (
    Genre("rock", (100, 140), 0.0, (0, 8, 10), (4, 12), tuple(range(0, 16, 2)), 42, "eighths", "power",
          (0, 8, 16), {tx.ELECTRIC_GUITAR: (29, 30, 27), tx.BASS: (33, 34), tx.OTHER: (18, 81)}),
    Genre("pop", (88, 124), 0.0, (0, 6, 8), (4, 12), tuple(range(0, 16, 2)), 42, "octaves", "sustain",
          (0, 24), {tx.PIANO: (0, 4, 5), tx.BASS: (33, 38), tx.OTHER: (48, 89, 81)}),
    Genre("funk", (92, 116), 0.12, (0, 3, 8, 10, 14), (4, 12), tuple(range(16)), 42, "syncopated", "stabs",
          (0, 24, 25), {tx.ELECTRIC_GUITAR: (27, 28), tx.BASS: (36, 37, 33), tx.OTHER: (61, 56, 65)}),
    Genre("disco", (116, 128), 0.0, (0, 4, 8, 12), (4, 12), (2, 6, 10, 14), 46, "octaves", "stabs",
          (24, 25, 0), {tx.PIANO: (0, 4), tx.BASS: (38, 39, 33), tx.OTHER: (48, 81, 61)}),
    Genre("hiphop", (78, 96), 0.2, (0, 7, 10), (4, 12), tuple(range(0, 16, 2)), 42, "long", "sustain",
          (25, 0, 24), {tx.PIANO: (4, 5), tx.BASS: (38, 39, 33), tx.OTHER: (89, 50, 11)}, mode="minor"),
    Genre("jazz", (110, 176), 0.33, (0,), (), (0, 4, 6, 8, 12, 14), 51, "walking", "stabs",
          (32, 40), {tx.PIANO: (0,), tx.BASS: (32,), tx.OTHER: (65, 66, 56)}, blues=True),
    Genre("ballad", (60, 80), 0.0, (0, 10), (8,), tuple(range(0, 16, 2)), 42, "long", "arpeggio",
          (0, 40), {tx.PIANO: (0, 1), tx.BASS: (33, 35), tx.OTHER: (48, 49, 73)}),
    Genre("reggae", (70, 90), 0.15, (8,), (8,), tuple(range(0, 16, 2)), 42, "onedrop", "skank",
          (0,), {tx.ELECTRIC_GUITAR: (27, 28), tx.BASS: (33, 34), tx.OTHER: (16, 17)}),
    Genre("metal", (140, 190), 0.0, tuple(range(0, 16, 2)), (4, 12), tuple(range(0, 16, 2)), 42, "eighths",
          "power", (16, 0), {tx.ELECTRIC_GUITAR: (30, 29), tx.BASS: (34, 33), tx.OTHER: (81, 48)}, mode="minor"),
    Genre("folk", (84, 120), 0.0, (0, 8), (4, 12), tuple(range(0, 16, 2)), 42, "eighths", "strum",
          (40, 0), {tx.ACOUSTIC_GUITAR: (25, 24), tx.BASS: (32, 33), tx.OTHER: (40, 73, 21)}),
)
GENRE_NAMES = tuple(g.name for g in GENRES)

# Lead voices: GM programs sung or played as a lead, and their ranges.
VOCAL_PROGRAMS = ((52, "choir"), (53, "vocalists"), (54, "vocalists"), (85, "vocalists"))
RANGES = {tx.VOCALS: (57, 76), tx.BASS: (28, 52), tx.PIANO: (48, 84), tx.ELECTRIC_GUITAR: (40, 76),
          tx.ACOUSTIC_GUITAR: (40, 76), tx.OTHER: (55, 84)}


def genre_by_name(name: str) -> Genre:
    for genre in GENRES:
        if genre.name == name:
            return genre
    raise ValueError(f"unknown genre {name!r}; choose from {', '.join(GENRE_NAMES)}")


@dataclass
class Harmony:
    """The song's key and one chord (as pitch classes, root first) per bar."""

    key: int
    scale: tuple[int, ...]
    chords: list[tuple[int, ...]]

    def chord(self, bar: int) -> tuple[int, ...]:
        return self.chords[bar % len(self.chords)]


def harmony(rng: np.random.Generator, genre: Genre) -> Harmony:
    key = int(rng.integers(12))
    scale = MINOR if genre.mode == "minor" else MAJOR
    degrees = BLUES if genre.blues and rng.random() < 0.6 else PROGRESSIONS[genre.mode][
        int(rng.integers(len(PROGRESSIONS[genre.mode])))]
    sevenths = genre.name in ("jazz", "funk") or rng.random() < 0.2
    chords = []
    for d in degrees:
        tones = [scale[(d + k) % 7] + 12 * ((d + k) // 7) for k in ((0, 2, 4, 6) if sevenths else (0, 2, 4))]
        chords.append(tuple((key + t) % 12 for t in tones))
    return Harmony(key, scale, chords)


def _fit(pc: int, low: int, high: int, near: int | None = None) -> int:
    """The MIDI pitch of pitch class ``pc`` inside [low, high], nearest to ``near`` (or lowest)."""
    options = [p for p in range(low, high + 1) if p % 12 == pc]
    if not options:
        return low + (pc - low) % 12
    return options[0] if near is None else min(options, key=lambda p: abs(p - near))


def drums(rng: np.random.Generator, genre: Genre, bars: int, step: float) -> list[Note]:
    """The groove on a 16-step grid per bar, with ghost notes, fills every 4th bar and crashes."""
    notes: list[Note] = []
    busy = rng.random()
    for bar in range(bars):
        t0 = bar * 16 * step
        fill = bar % 4 == 3 and rng.random() < 0.6
        for s in range(16):
            t = t0 + s * step
            if fill and s >= 12:
                tom = (50, 48, 47, 45, 43, 41)[int(rng.integers(6))]
                notes.append((t, t + step, tom, int(rng.integers(85, 120))))
                continue
            if s in genre.kick or (busy > 0.7 and s % 4 == 3 and rng.random() < 0.2):
                notes.append((t, t + step, 36, int(rng.integers(95, 122))))
            if s in genre.snare:
                notes.append((t, t + step, 38 if genre.name != "reggae" else 37, int(rng.integers(92, 120))))
            elif genre.name == "funk" and s % 2 == 1 and rng.random() < 0.3:
                notes.append((t, t + step, 38, int(rng.integers(30, 55))))  # ghost note
            if s in genre.hats:
                vel = int(rng.integers(70, 95)) if s % 4 == 0 else int(rng.integers(45, 75))
                notes.append((t, t + step * 0.8, genre.hat_note, vel))
            if genre.name == "jazz" and s in (4, 12):
                notes.append((t, t + step, 44, int(rng.integers(50, 70))))  # hi-hat pedal on 2 and 4
        if bar % 8 == 0 or (bar % 4 == 0 and rng.random() < 0.3):
            notes.append((t0, t0 + 4 * step, 49 if rng.random() < 0.8 else 57, int(rng.integers(85, 115))))
    return notes


def bass_line(rng: np.random.Generator, genre: Genre, harm: Harmony, bars: int, step: float) -> list[Note]:
    low, high = RANGES[tx.BASS]
    notes: list[Note] = []
    vel0 = int(rng.integers(85, 112))
    for bar in range(bars):
        t0 = bar * 16 * step
        chord = harm.chord(bar)
        root = _fit(chord[0], low, low + 14)
        fifth = _fit(chord[2 % len(chord)], low, high, near=root + 7)
        if genre.bass == "eighths":
            hits = [(s, 2, root) for s in range(0, 16, 2)]
        elif genre.bass == "octaves":
            hits = [(s, 2, root if s % 4 == 0 else min(root + 12, high)) for s in range(0, 16, 2)]
        elif genre.bass == "walking":
            nxt = _fit(harm.chord(bar + 1)[0], low, low + 14)
            third = _fit(chord[1], low, high, near=root + 4)
            approach = nxt - 1 if rng.random() < 0.5 else nxt + 1
            hits = [(0, 4, root), (4, 4, third), (8, 4, fifth), (12, 4, approach)]
        elif genre.bass == "syncopated":
            grid = sorted({0, 3, 6, 8, 10, 11, 14} & set(rng.choice(16, 9, replace=False).tolist()) | {0})
            hits = [(s, 1 + int(rng.integers(2)), (root, root + 12, fifth)[int(rng.integers(3))]) for s in grid]
        elif genre.bass == "onedrop":
            hits = [(3, 2, root), (6, 2, fifth), (8, 4, root), (14, 2, root)]
        else:  # long
            hits = [(0, 6, root), (8, 6, fifth if rng.random() < 0.4 else root)]
        for s, length, pitch in hits:
            start = t0 + s * step
            notes.append((start, start + length * step * 0.92, int(np.clip(pitch, low, high)),
                          int(np.clip(vel0 + rng.integers(-10, 11) + (8 if s == 0 else 0), 30, 127))))
    return notes


def comping(rng: np.random.Generator, genre: Genre, harm: Harmony, bars: int, step: float,
            instrument: str) -> list[Note]:
    """Chords voiced inside the instrument's range in the genre's rhythm."""
    low, high = RANGES[instrument]
    style = genre.comp
    if instrument == tx.PIANO and style in ("power", "strum"):
        style = "sustain"
    notes: list[Note] = []
    vel0 = int(rng.integers(60, 96))
    center = (low + high) // 2
    for bar in range(bars):
        t0 = bar * 16 * step
        chord = harm.chord(bar)
        voicing = sorted({_fit(pc, low, high, near=center - 4 + 3 * k) for k, pc in enumerate(chord)})
        if style == "power":
            root = _fit(chord[0], low, low + 12)
            voicing = [root, root + 7, root + 12]
            hits = [(s, 2) for s in range(0, 16, 2)]
        elif style == "stabs":
            hits = [(s, 1) for s in sorted(set(rng.choice(16, 5, replace=False).tolist()))]
        elif style == "skank":
            hits = [(4, 1), (12, 1)] if rng.random() < 0.5 else [(s, 1) for s in (2, 6, 10, 14)]
        elif style == "arpeggio":
            for i, s in enumerate(range(0, 16, 2)):
                pitch = voicing[i % len(voicing)]
                notes.append((t0 + s * step, t0 + (s + 3) * step, pitch, vel0 + int(rng.integers(-8, 9))))
            continue
        elif style == "strum":
            hits = [(0, 3), (4, 2), (6, 2), (10, 2), (12, 4)]
        else:  # sustain
            hits = [(0, 8), (8, 8)] if rng.random() < 0.5 else [(0, 16)]
        strum = 0.012 if instrument in (tx.ACOUSTIC_GUITAR, tx.ELECTRIC_GUITAR) else 0.0
        for s, length in hits:
            for k, pitch in enumerate(voicing):
                start = t0 + s * step + k * strum
                notes.append((start, t0 + (s + length) * step * 0.97, pitch,
                              int(np.clip(vel0 + rng.integers(-6, 7), 20, 127))))
    return notes


def melody(rng: np.random.Generator, harm: Harmony, bars: int, step: float, instrument: str) -> list[Note]:
    """A lead line: two-bar phrases with rests, chord tones on strong steps, scale steps between."""
    low, high = RANGES[instrument]
    scale_pcs = sorted({(harm.key + d) % 12 for d in harm.scale})
    pitches = [p for p in range(low, high + 1) if p % 12 in scale_pcs]
    current = pitches[len(pitches) // 2]
    vel0 = int(rng.integers(75, 105))
    rhythms = ((4, 2, 2, 4, 4), (2, 2, 2, 2, 8), (6, 2, 4, 4), (3, 3, 2, 4, 4), (8, 4, 4), (2, 2, 4, 2, 2, 4))
    notes: list[Note] = []
    for bar in range(0, bars, 2):
        if rng.random() < 0.2:
            continue  # a phrase of rest
        pattern = rhythms[int(rng.integers(len(rhythms)))] + rhythms[int(rng.integers(len(rhythms)))]
        s = 0
        for length in pattern:
            if s >= 32:
                break
            b = bar + s // 16
            if s % 8 == 0:  # strong step: the nearest chord tone
                tones = [p for p in pitches if p % 12 in harm.chord(b)] or pitches
                current = min(tones, key=lambda p: abs(p - current) + rng.random() * 3)
            else:
                i = pitches.index(min(pitches, key=lambda p: abs(p - current)))
                i = int(np.clip(i + rng.choice((-2, -1, -1, 1, 1, 2)), 0, len(pitches) - 1))
                current = pitches[i]
            if rng.random() > 0.12 and b < bars:
                start = (bar * 16 + s) * step
                notes.append((start, start + min(length, 32 - s) * step * 0.95, current,
                              int(np.clip(vel0 + rng.integers(-10, 11), 20, 127))))
            s += length
    return notes


def humanize(notes: list[Note], rng: np.random.Generator, step: float, *, timing_sd: float = 0.008,
             swing: float = 0.0, velocity_sd: float = 7.0) -> list[Note]:
    """Play ``notes`` like a musician: swing on off-beat grid steps, a per-part lag, per-note jitter
    (``timing_sd`` seconds) and velocity variation; durations keep their length."""
    lag = float(rng.normal(0.0, timing_sd))
    out: list[Note] = []
    for start, end, pitch, vel in notes:
        shift = lag + float(rng.normal(0.0, timing_sd))
        grid = start / step if step > 0 else 0.0
        if swing and abs(grid - round(grid)) < 1e-6 and int(round(grid)) % 2 == 1:
            shift += swing * step
        new_start = max(0.0, start + shift)
        new_vel = int(np.clip(round(vel + rng.normal(0.0, velocity_sd)), 1, 127))
        out.append((new_start, new_start + (end - start), pitch, new_vel))
    return out


def compose(rng: np.random.Generator, genre: Genre, instruments: list[str], seconds: float,
            tempo: float) -> dict[str, tuple[str, list[Note]]]:
    """Notes for each instrument of a ``genre`` song lasting ``seconds``: ``{instrument: (role, notes)}``.

    The lead goes to vocals when present, else to one ``other`` or guitar part; the rest comp.
    """
    step = 60.0 / tempo / 4.0  # one sixteenth
    bars = int(np.ceil(seconds / (16 * step)))
    harm = harmony(rng, genre)
    lead = tx.VOCALS if tx.VOCALS in instruments else next(
        (i for i in (tx.OTHER, tx.ELECTRIC_GUITAR, tx.PIANO) if i in instruments), None)
    parts: dict[str, tuple[str, list[Note]]] = {}
    for inst in instruments:
        if inst == tx.DRUMS:
            role, notes = f"{genre.name} groove", drums(rng, genre, bars, step)
        elif inst == tx.BASS:
            role, notes = f"{genre.name} bass ({genre.bass})", bass_line(rng, genre, harm, bars, step)
        elif inst == lead:
            role, notes = "lead", melody(rng, harm, bars, step, inst)
        else:
            role, notes = f"comping ({genre.comp})", comping(rng, genre, harm, bars, step, inst)
        timing = 0.004 if inst == tx.DRUMS else 0.010
        parts[inst] = (role, humanize(notes, rng, step, timing_sd=timing, swing=genre.swing))
    return parts
