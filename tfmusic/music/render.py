"""Render tick-grid note sequences as scores (music21: MIDI, MusicXML) and PNG piano rolls.

A sequence is a list of per-tick *events* at ``ticks_per_beat`` resolution, the token layout used
by dMelodies and the measure VAEs:

* an ``int`` MIDI pitch or a note name (``'C#4'``, ``'E-4'``, ``'Bb3'``) starts a note,
* ``REST`` (``'rest'``) starts a rest,
* ``HOLD`` (``'__'``) or ``None`` extends the previous note or rest by one tick.

Nothing here knows about a particular dataset; map token ids to events first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

from tfmusic.music.notes import name_to_midi, split_name

REST = "rest"
HOLD = "__"
Event = Union[int, str, None]



@dataclass(frozen=True)
class NoteSpan:
    """One note (``pitch`` = MIDI) or rest (``pitch`` None) spanning ``[start, start + length)`` ticks;
    ``name`` keeps the spelling it was given (None for rests or bare MIDI numbers)."""

    pitch: int | None
    start: int
    length: int
    name: str | None = None


def to_spans(events: Sequence[Event]) -> list[NoteSpan]:
    """Merge per-tick events into notes and rests (a leading hold counts as a rest)."""
    spans: list[NoteSpan] = []
    for tick, ev in enumerate(events):
        if ev is None or (isinstance(ev, str) and ev == HOLD):
            if spans:
                last = spans[-1]
                spans[-1] = NoteSpan(last.pitch, last.start, last.length + 1, last.name)
            else:
                spans.append(NoteSpan(None, tick, 1))
        elif isinstance(ev, str) and ev.lower() == REST:
            spans.append(NoteSpan(None, tick, 1))
        elif isinstance(ev, str):
            spans.append(NoteSpan(name_to_midi(ev), tick, 1, ev.strip()))
        else:
            midi = int(ev)
            if not 0 <= midi <= 127:
                raise ValueError(f"tick {tick}: MIDI pitch {midi} outside 0..127")
            spans.append(NoteSpan(midi, tick, 1))
    return spans


def events_to_score(
    events: Sequence[Event],
    *,
    ticks_per_beat: int = 2,
    time_signature: str = "4/4",
    title: str | None = None,
    tempo_bpm: float | None = None,
):
    """A ``music21.stream.Score`` (one part, barred, ties across barlines) of one event sequence."""
    from music21 import meter, metadata, note, stream, tempo

    part = stream.Part()
    part.append(meter.TimeSignature(time_signature))
    if tempo_bpm:
        part.append(tempo.MetronomeMark(number=tempo_bpm))
    for span in to_spans(events):
        ql = span.length / ticks_per_beat
        if span.pitch is None:
            el = note.Rest(quarterLength=ql)
        else:
            el = note.Note(quarterLength=ql)
            if span.name:
                letter, accidentals, octave = split_name(span.name)
                el.pitch.name = letter + accidentals
                el.pitch.octave = octave
            else:
                el.pitch.midi = span.pitch  # music21's default spelling
        part.append(el)
    part.makeMeasures(inPlace=True)
    part.makeTies(inPlace=True)
    score = stream.Score()
    if title:
        score.metadata = metadata.Metadata(title=title)
    score.insert(0, part)
    return score


def write_midi(score, path: str | os.PathLike) -> Path:
    """Write a music21 stream as a standard MIDI file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    score.write("midi", fp=str(path))
    return path


def write_musicxml(score, path: str | os.PathLike) -> Path:
    """Write a music21 stream as uncompressed MusicXML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    score.write("musicxml", fp=str(path))
    return path


def plot_pianorolls(
    sequences: Sequence[Sequence[Event]],
    path: str | os.PathLike,
    *,
    titles: Sequence[str] | None = None,
    values: Sequence[float] | None = None,
    value_label: str = "value",
    ticks_per_beat: int = 2,
    beats_per_bar: int = 4,
    label_notes: bool = True,
) -> Path:
    """One PNG with a piano-roll row per sequence (optional title each) and, if ``values`` is given,
    a bar beside each row plotting that value (e.g. an attribute along a latent traversal)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not sequences:
        raise ValueError("no sequences to plot")
    if titles is not None and len(titles) != len(sequences):
        raise ValueError(f"{len(titles)} titles for {len(sequences)} sequences")
    if values is not None and len(values) != len(sequences):
        raise ValueError(f"{len(values)} values for {len(sequences)} sequences")
    all_spans = [to_spans(seq) for seq in sequences]
    pitches = [s.pitch for spans in all_spans for s in spans if s.pitch is not None]
    lo, hi = (min(pitches) - 1, max(pitches) + 1) if pitches else (59, 73)
    n = len(sequences)
    ncols = 2 if values is not None else 1
    fig, axes = plt.subplots(n, ncols, figsize=(9 if ncols == 2 else 8, 1.9 * n + 0.4), squeeze=False,
                             gridspec_kw={"width_ratios": [6, 1]} if ncols == 2 else None)
    if values is not None:
        vmin, vmax = min(0.0, float(min(values))), max(0.0, float(max(values)))
        pad = 0.05 * (vmax - vmin or 1.0)
    for row, (spans, seq) in enumerate(zip(all_spans, sequences)):
        ax = axes[row][0]
        for s in spans:
            if s.pitch is None:
                continue
            ax.broken_barh([(s.start, s.length)], (s.pitch - 0.4, 0.8), facecolors="tab:blue", edgecolors="k")
            if label_notes:
                ax.text(s.start + 0.05, s.pitch + 0.5, s.name or str(s.pitch), fontsize=6, va="bottom")
        ticks_per_bar = ticks_per_beat * beats_per_bar
        for t in range(0, len(seq) + 1):
            ax.axvline(t, color="0.3" if t % ticks_per_bar == 0 else "0.9", lw=1.0 if t % ticks_per_bar == 0 else 0.5)
        ax.set_xlim(0, max(len(seq), 1))
        ax.set_ylim(lo, hi + 1)
        ax.set_ylabel("MIDI")
        if titles is not None:
            ax.set_title(titles[row], fontsize=9, loc="left")
        if row == n - 1:
            ax.set_xlabel(f"tick ({ticks_per_beat} per beat)")
        if values is not None:
            vax = axes[row][1]
            vax.barh([0], [float(values[row])], color="tab:orange")
            vax.set_xlim(vmin - pad, vmax + pad)
            vax.set_yticks([])
            vax.set_title(f"{value_label} = {float(values[row]):.3g}", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
