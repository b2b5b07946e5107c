"""Synthesized multitrack songs: music21 Bach chorales + generated bass/drums -> per-instrument stems.

No real multitrack dataset can be downloaded here, so this renders MIDI arrangements with a
General-MIDI SoundFont: by default TimGM6mb.sf2, bundled in the pretty_midi wheel (so results are
reproducible from pip alone), or any SoundFont 2 file given with ``soundfont=`` / ``--soundfont``
(e.g. Debian's ``fluid-soundfont-gm``: /usr/share/sounds/sf2/FluidR3_GM.sf2, much better sounding).
Each song is written in the MedleyDB layout::

    <Name>/<Name>_METADATA.yaml    stem labels (MedleyDB vocabulary), programs, gains, pans, tempo
    <Name>/<Name>_MIX.wav          numpy sum of the stems (exact: int16 sums of the int16 stems)
    <Name>/<Name>_STEMS/<Name>_STEM_NN.wav
    <Name>/<Name>.mid              the exact notes of every stem (one MIDI track per stem)

What each instrument plays is planned in :mod:`tfmusic.data.synth_plan` (chorale voices, generated
bass and drums, random programs, tempo, gain, panning, muted sections), all from ``(seed, index)``,
so a song is the same whichever worker renders it; this module renders and writes it.

Renderer: ``midirenderer`` (PyPI, MIT; a Rust build of rustysynth, a complete SoundFont 2
synthesizer with its filters, envelopes, LFOs, reverb and chorus), a self-contained abi3 wheel with
no dependencies: ``pip install tfmusic`` is all a machine (or a Dataflow worker) needs. It renders
one stem from a one-track MIDI file at 48 kHz, int16; the stem is then resampled (soxr HQ) to the
song's rate. ``tinysoundfont`` was used before; it is 3x faster (the job is still >30x real time per
stem with midirenderer) but its wheel requires ``pyaudio``, which has no Linux wheel and does not
build without PortAudio headers, so a plain ``pip install`` of tfmusic broke.

The Beam job (:func:`SynthesizeStems`): workers render songs in memory and stage their files in
``OUT/.staging/RUN/``; :class:`tfmusic.beam_io.FinalizeFiles` renames them all into place at once,
then the pipeline writes ``synth_manifest.json`` (no paths, no wall times: a local and a ``gs://``
run write the same bytes). Output may be local or on any Beam filesystem.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from tfmusic import beam_io, storage
from tfmusic.audio.io import resample, to_int16, wav_bytes
from tfmusic.data.stems import taxonomy as tx
from tfmusic.data.synth_plan import (  # noqa: F401  (re-exported: the plan is part of this API)
    DEFAULT_SECONDS, INCLUDE_P, PROGRAMS, SAMPLE_RATES, SECTION_BEATS, Part, SongPlan, chorale_paths,
    chorale_voices, plan_song, plan_summary, song_name)

log = logging.getLogger(__name__)

MANIFEST = "synth_manifest.json"
MIX_PEAK = 0.8  # the mixture is scaled to this peak (int16 sums then never clip)


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


@functools.lru_cache(maxsize=2)
def soundfont_bytes(soundfont: str | None = None) -> bytes:
    """The SoundFont's bytes (read once per process): the bundled TimGM6mb when ``soundfont`` is None,
    else the file at that local or remote (``gs://``) path."""
    if soundfont is None:
        return soundfont_path().read_bytes()
    try:
        return storage.read_bytes(soundfont)
    except storage.StorageError as err:
        raise ValueError(f"soundfont {soundfont}: file does not exist") from err


@functools.lru_cache(maxsize=2)
def _soundfont_sha256(soundfont: str | None) -> str:
    return hashlib.sha256(soundfont_bytes(soundfont)).hexdigest()


def soundfont_name(soundfont: str | None = None) -> str:
    return soundfont_path().name if soundfont is None else storage.basename(soundfont)


def soundfont_info(soundfont: str | None = None) -> dict:
    """Check a SoundFont before a job starts (exists, SoundFont 2, renders a note); returns its
    name, size and sha256 (recorded in the manifest, and checked by every worker)."""
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
    return {"name": name, "bytes": len(data), "sha256": _soundfont_sha256(soundfont)}


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


def render_part(part: Part, seconds: float, sample_rate: int, soundfont: str | None = None) -> np.ndarray:
    """Render one part to float32 stereo ``(2, samples)`` at ``sample_rate``, then apply gain and pan."""
    total = int(round(seconds * sample_rate))
    audio = resample(_render_48k(part, seconds, soundfont_bytes(soundfont)), RENDER_RATE, sample_rate)
    out = np.zeros((2, total), dtype=np.float32)
    n = min(total, audio.shape[1])
    out[:, :n] = audio[:, :n]
    angle = (part.pan + 1.0) * np.pi / 4.0
    gains = np.array([np.cos(angle), np.sin(angle)], dtype=np.float32) * np.float32(np.sqrt(2.0))
    return (out * gains[:, None] * np.float32(10 ** (part.gain_db / 20))).astype(np.float32)


def song_midi(plan: SongPlan) -> bytes:
    """The song's MIDI file: one track per stem, at the song's tempo."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=plan.tempo_bpm)
    for k, part in enumerate(plan.parts, 1):
        inst = pretty_midi.Instrument(program=part.program, is_drum=part.is_drum,
                                      name=f"STEM_{k:02d} {part.instrument} ({part.label})")
        inst.notes = [pretty_midi.Note(velocity=v, pitch=p, start=s, end=e) for s, e, p, v in part.notes]
        pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def render_files(plan: SongPlan, soundfont: str | None = None) -> tuple[dict[str, bytes], dict]:
    """Render ``plan`` in memory: ``({relative file name: bytes}, summary)`` in the MedleyDB layout."""
    import yaml

    name = plan.name
    audio = [render_part(p, plan.seconds, plan.sample_rate, soundfont) for p in plan.parts]
    peak = max([float(np.abs(np.sum(audio, axis=0)).max())] + [float(np.abs(a).max()) for a in audio])
    scale = MIX_PEAK / peak if peak > 0 else 1.0
    pcm = [to_int16(a * scale) for a in audio]
    mix = np.sum([p.astype(np.int32) for p in pcm], axis=0)
    if np.abs(mix).max() > 32767:
        raise RuntimeError(f"{name}: mixture overflowed int16 after scaling (peak {np.abs(mix).max()})")
    files: dict[str, bytes] = {}
    stems_meta = {}
    for k, (part, p) in enumerate(zip(plan.parts, pcm), 1):
        fname = f"{name}_STEM_{k:02d}.wav"
        files[f"{name}/{name}_STEMS/{fname}"] = wav_bytes(p, plan.sample_rate, name=fname)
        active = float(np.mean([e - s for s, e, _, _ in part.notes])) if part.notes else 0.0
        stems_meta[f"S{k:02d}"] = {
            "filename": fname, "instrument": part.label, "tfmusic_instrument": part.instrument,
            "component": "melody" if part.role.startswith("soprano") else ("bass" if part.instrument == tx.BASS else ""),
            "program": part.program, "is_drum": part.is_drum, "gain_db": round(part.gain_db, 3),
            "pan": round(part.pan, 3), "role": part.role, "notes": len(part.notes),
            "mean_note_seconds": round(active, 4), "midi_track": k - 1,
        }
    mix_name = f"{name}_MIX.wav"
    files[f"{name}/{mix_name}"] = wav_bytes(mix.astype(np.int16), plan.sample_rate, name=mix_name)
    files[f"{name}/{name}.mid"] = song_midi(plan)
    meta = {
        "artist": "tfmusic synth", "title": f"{plan.source} (seed {plan.seed}, song {plan.index})",
        "composer": "J. S. Bach (arr. generated)", "genre": "Synthesized",
        "origin": f"tfmusic synth ({soundfont_name(soundfont)} via midirenderer)",
        "has_bleed": "no", "instrumental": "no" if any(p.instrument == tx.VOCALS for p in plan.parts) else "yes",
        "mix_filename": mix_name, "stem_dir": f"{name}_STEMS", "midi_filename": f"{name}.mid",
        "source_score": plan.source, "tempo_bpm": plan.tempo_bpm, "seed": plan.seed, "index": plan.index,
        "sample_rate": plan.sample_rate, "seconds": plan.seconds, "sections": plan.sections,
        "section_beats": SECTION_BEATS, "mix_scale": round(scale, 6), "stems": stems_meta,
    }
    files[f"{name}/{name}_METADATA.yaml"] = yaml.safe_dump(meta, sort_keys=False).encode("utf-8")
    summary = {"name": name, "index": plan.index, "status": "written",
               "instruments": sorted({p.instrument for p in plan.parts}), "stems": len(plan.parts),
               "notes": sum(len(p.notes) for p in plan.parts), "seconds": plan.seconds}
    return files, summary


def render_song(plan: SongPlan, out_dir: str | os.PathLike, soundfont: str | None = None) -> dict:
    """Render ``plan`` into ``out_dir/<name>/`` (local or remote, MedleyDB layout); returns the summary.
    (Outside Beam; the job stages the same files through :func:`render_and_stage`.)"""
    files, summary = render_files(plan, soundfont)
    for rel, data in files.items():
        storage.write_bytes(storage.join(os.fspath(out_dir), *rel.split("/")), data)
    return summary


def check_soundfont(soundfont: str | None, sha256: str | None) -> None:
    """Fail (the whole job) when this worker's SoundFont differs from the one the driver checked."""
    if sha256 is None:
        return
    got = _soundfont_sha256(soundfont)
    if got != sha256:
        raise RuntimeError(f"soundfont {soundfont or soundfont_name(None)} on this worker has sha256 {got}, "
                           f"the driver checked {sha256} (install the same pretty_midi / use a gs:// soundfont)")


def render_and_stage(index: int, staging: str, seed: int, seconds: float, sample_rate: int,
                     soundfont: str | None = None, soundfont_sha256: str | None = None) -> dict:
    """Worker side of one song: plan, render in memory, stage every file. A failing song becomes a
    reject (nothing of it is finalized) instead of killing the job."""
    check_soundfont(soundfont, soundfont_sha256)
    try:
        files, summary = render_files(plan_song(seed, index, seconds, sample_rate), soundfont)
        entries = [beam_io.stage_bytes(staging, rel, data) for rel, data in sorted(files.items())]
    except Exception as err:  # reported in the manifest, the other songs still render
        log.exception("song %d failed", index)
        return {"summary": {"name": song_name(seed, index), "index": index, "status": "rejected",
                            "reason": f"{type(err).__name__}: {err}"}, "files": []}
    summary["files"] = sorted(files)
    return {"summary": summary, "files": entries}


def SynthesizeStems(out_dir: str, songs: int, *, seed: int = 0, seconds: float = 20.0,  # noqa: N802
                    sample_rate: int = 44_100, soundfont: str | None = None, soundfont_info: dict | None = None,
                    run_id: str | None = None, progress: bool = False):
    """PTransform (apply to the pipeline root): render ``songs`` songs into ``out_dir``; its output is
    one element, the path of the finished ``synth_manifest.json``. ``out_dir`` must be prepared
    (:func:`prepare`) by the driver first."""
    import apache_beam as beam

    from tfmusic.beam_options import progress_dofn

    staging = beam_io.staging_dir(out_dir, run_id or beam_io.new_run_id())
    sf_info = dict(soundfont_info or {"name": soundfont_name(soundfont), "sha256": None})
    params = {"job": "synthesize_stems", "seed": seed, "seconds": seconds, "sample_rate": sample_rate,
              "soundfont": sf_info["name"], "soundfont_sha256": sf_info["sha256"], "layout": "medleydb"}

    class _Synthesize(beam.PTransform):
        def expand(self, root):
            rendered = (root
                        | "Songs" >> beam.Create(list(range(songs)), reshuffle=True)
                        | "RenderAndStage" >> beam.ParDo(progress_dofn(
                            lambda i: render_and_stage(i, staging, seed, seconds, sample_rate, soundfont,
                                                       sf_info["sha256"]),
                            total=songs, desc="synthesize: songs", unit="song", enabled=progress)))
            summaries = (rendered
                         | "Summaries" >> beam.Map(lambda r: r["summary"])
                         | "AllSongs" >> beam.combiners.ToList())
            return (rendered
                    | "StagedFiles" >> beam.FlatMap(lambda r: r["files"])
                    | "Finalize" >> beam_io.FinalizeFiles(out_dir, staging)
                    | "WriteManifest" >> beam.Map(write_manifest, beam.pvalue.AsSingleton(summaries), out_dir,
                                                  songs, params))

    return _Synthesize()


def write_manifest(files: list[dict], summaries: list[dict], out_dir: str, songs: int, params: dict) -> str:
    """After finalization: ``synth_manifest.json`` from the song summaries and finalized files."""
    results = sorted(summaries, key=lambda r: r["index"])
    written = [r for r in results if r["status"] == "written"]
    counts = {"in": songs, "written": len(written), "rejected": len(results) - len(written)}
    if len(results) != songs:
        raise beam_io.CountsError(f"synthesize: {songs} songs in but {len(results)} results out")
    beam_io.check_counts({"in": songs, "out": len(written), "rejected": counts["rejected"]}, "synthesize")
    names = {e["file"] for e in files}
    missing = [f for r in written for f in r["files"] if f not in names]
    if missing or len(names) != sum(len(r["files"]) for r in written):
        raise beam_io.CountsError(f"synthesize: finalized files do not match the written songs (missing {missing[:3]})")
    per_inst = {inst: sum(inst in r["instruments"] for r in written) for inst in tx.INSTRUMENTS}
    manifest = {**params, "renderer": renderer_version(), "counts": counts, "songs_per_instrument": per_inst,
                "songs": [{k: v for k, v in r.items() if k != "files"} for r in results], "files": files}
    return beam_io.write_metadata(out_dir, {MANIFEST: beam_io.json_bytes(manifest)}, last=MANIFEST)


def prepare(out_dir: str | os.PathLike) -> str:
    """Check the output location; delete an older manifest, then older synthesized songs."""
    return beam_io.prepare_output(os.fspath(out_dir), metadata=(MANIFEST,), data_patterns=["Synth_s*/**"])


def read_manifest(out_dir: str | os.PathLike) -> dict:
    import json

    path = storage.join(os.fspath(out_dir), MANIFEST)
    if not storage.exists(path):
        raise FileNotFoundError(2, "no synth manifest (run `tfmusic data synthesize` first)", path)
    return json.loads(storage.read_text(path))


def synthesize(
    out_dir: str | os.PathLike,
    songs: int,
    seed: int = 0,
    seconds: float = DEFAULT_SECONDS,
    sample_rate: int = 44_100,
    beam_args: Sequence[str] = (),
    progress: bool = True,
    soundfont: str | os.PathLike | None = None,
) -> dict:
    """The Beam job: render ``songs`` songs in parallel into ``out_dir`` (local or ``gs://``...);
    writes ``synth_manifest.json``. Returns the manifest with this run's ``wall_seconds`` added (not
    written); with ``--template_location`` only the Dataflow template is written and
    ``{"template_location", "out"}`` is returned."""
    from tfmusic.beam_options import flag_value, run_pipeline

    if songs < 1:
        raise ValueError(f"songs must be >= 1, got {songs}")
    if sample_rate not in SAMPLE_RATES:
        raise ValueError(f"sample rate must be one of {SAMPLE_RATES}, got {sample_rate}")
    if not 5.0 <= seconds <= 600.0:
        raise ValueError(f"seconds must be within [5, 600], got {seconds}")
    start = time.time()
    from tfmusic.data.stems.layouts import check_worker_path

    out = storage.check_path(out_dir, what="output")
    check_worker_path(out, "--out", beam_args)
    if soundfont is not None:  # (the bundled default is installed on every worker with pretty_midi)
        soundfont = storage.check_path(soundfont, what="soundfont")
        if storage.is_local(soundfont):
            soundfont = os.path.abspath(soundfont)
        check_worker_path(soundfont, "--soundfont", beam_args)
    sf_info = soundfont_info(soundfont)
    chorale_paths()  # fail early (and warm the corpus cache) before workers start
    out = prepare(out)
    finished = run_pipeline(lambda p: p | "SynthesizeStems" >> SynthesizeStems(
        out, songs, seed=seed, seconds=seconds, sample_rate=sample_rate, soundfont=soundfont,
        soundfont_info=sf_info, progress=progress), beam_args)
    if not finished:
        return {"template_location": flag_value(beam_args, "--template_location"), "out": out}
    manifest = read_manifest(out)
    manifest["wall_seconds"] = round(time.time() - start, 2)
    return manifest
