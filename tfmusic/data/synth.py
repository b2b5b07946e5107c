"""Synthesized multitrack songs: composed and arranged MIDI -> produced per-instrument stems.

No real multitrack dataset can be downloaded here, so this renders MIDI arrangements with
General-MIDI SoundFonts, each song with one of the job's SoundFonts (``--soundfont``, repeatable;
default: Debian's ``fluid-soundfont-gm`` when installed, else TimGM6mb.sf2 bundled in the
pretty_midi wheel, reproducible from pip alone) and optionally its drums with a drum-only kit
(``--drum-soundfont``, e.g. Debian's ``avldrums.lv2-soundfont``). Each stem then goes through a
production chain (:mod:`tfmusic.data.mixing`: EQ, compression, reverb, panning, loudness) and the
song is brought to a streaming-era loudness. Each song is written in the MedleyDB layout::

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

import dataclasses
import io
import logging
import os
import time
from typing import Sequence

import numpy as np

from tfmusic import beam_io, storage
from tfmusic.audio.io import resample, to_int16, wav_bytes
from tfmusic.data import compose
from tfmusic.data.stems import taxonomy as tx
from tfmusic.data.soundfonts import (  # noqa: F401  (re-exported: rendering is part of this API)
    BUNDLED, RENDER_RATE, SYSTEM_SOUNDFONT, _render_48k, check_soundfont, default_soundfonts, is_drum_kit, part_midi, render_samples,
    renderer_version, sample_set_kind, soundfont_bytes, soundfont_info, soundfont_name, soundfont_path)
from tfmusic.data.synth_plan import (  # noqa: F401  (re-exported: the plan is part of this API)
    CHORALE_SHARE, DEFAULT_SECONDS, DRUM_KIT_SHARE, INCLUDE_P, PIANO_SAMPLE_SHARE, PROGRAMS, SAMPLE_RATES, SECTION_BEATS, Part, SongPlan, chorale_paths,
    chorale_voices, plan_song, plan_summary, song_name)

log = logging.getLogger(__name__)

MANIFEST = "synth_manifest.json"
MIX_PEAK = 0.8  # the mixture is scaled to this peak (int16 sums then never clip)


def render_part(part: Part, seconds: float, sample_rate: int, soundfont: str | None = None) -> np.ndarray:
    """Render one part to float32 stereo ``(2, samples)`` at ``sample_rate``; then its production
    chain (``part.chain``), or for a dry plan only its gain and pan."""
    from tfmusic.data import mixing

    total = int(round(seconds * sample_rate))
    if sample_set_kind(soundfont) != "sf2":  # recorded samples: rendered note by note at the song's rate
        audio = render_samples(soundfont, part, seconds, sample_rate)
    else:
        audio = resample(_render_48k(part, seconds, soundfont_bytes(soundfont)), RENDER_RATE, sample_rate)
    out = np.zeros((2, total), dtype=np.float32)
    n = min(total, audio.shape[1])
    out[:, :n] = audio[:, :n]
    if part.chain is not None:
        return mixing.process_stem(out, sample_rate, part.chain)
    angle = (part.pan + 1.0) * np.pi / 4.0
    gains = np.array([np.cos(angle), np.sin(angle)], dtype=np.float32) * np.float32(np.sqrt(2.0))
    return (out * gains[:, None] * np.float32(10 ** (part.gain_db / 20))).astype(np.float32)


def part_soundfont(plan: SongPlan, part: Part, soundfonts: Sequence[str | None],
                   drum_soundfonts: Sequence[str] = (), pianos: Sequence[str] = ()) -> tuple[Part, str | None]:
    """The part to render and the SoundFont to render it with: a drum-only kit plays its one
    preset (program 0), so the part is rendered as program 0 there; a recorded piano plays the piano."""
    if part.is_drum and plan.drum_soundfont >= 0 and drum_soundfonts:
        return dataclasses.replace(part, program=0), drum_soundfonts[plan.drum_soundfont]
    if part.instrument == tx.PIANO and plan.piano_samples >= 0 and pianos:
        return part, pianos[plan.piano_samples]
    return part, soundfonts[plan.soundfont % len(soundfonts)]


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


def render_files(plan: SongPlan, soundfonts: Sequence[str | None] = (None,),
                 drum_soundfonts: Sequence[str] = (), pianos: Sequence[str] = ()) -> tuple[dict[str, bytes], dict]:
    """Render ``plan`` in memory: ``({relative file name: bytes}, summary)`` in the MedleyDB layout."""
    import yaml

    from tfmusic.data import mixing

    name = plan.name
    fonts = [part_soundfont(plan, p, soundfonts, drum_soundfonts, pianos) for p in plan.parts]
    audio = [render_part(p, plan.seconds, plan.sample_rate, sf) for p, sf in fonts]
    if plan.mixing == "dry":
        peak = max([float(np.abs(np.sum(audio, axis=0)).max())] + [float(np.abs(a).max()) for a in audio])
        scale = MIX_PEAK / peak if peak > 0 else 1.0
    else:
        scale = mixing.master_gain(audio, plan.sample_rate, plan.mix_lufs, plan.mixing)
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
            "soundfont": soundfont_name(fonts[k - 1][1]),
            **({"chain": part.chain.summary()} if part.chain is not None else {}),
        }
    mix_name = f"{name}_MIX.wav"
    files[f"{name}/{mix_name}"] = wav_bytes(mix.astype(np.int16), plan.sample_rate, name=mix_name)
    files[f"{name}/{name}.mid"] = song_midi(plan)
    meta = {
        "artist": "tfmusic synth", "title": f"{plan.source} (seed {plan.seed}, song {plan.index})",
        "composer": "J. S. Bach (arr. generated)" if plan.genre == "chorale" else "tfmusic compose",
        "genre": plan.genre, "mixing": plan.mixing, "mix_lufs": plan.mix_lufs,
        "origin": f"tfmusic synth ({soundfont_name(soundfonts[plan.soundfont % len(soundfonts)])} via midirenderer)",
        "has_bleed": "no", "instrumental": "no" if any(p.instrument == tx.VOCALS for p in plan.parts) else "yes",
        "mix_filename": mix_name, "stem_dir": f"{name}_STEMS", "midi_filename": f"{name}.mid",
        "source_score": plan.source, "tempo_bpm": plan.tempo_bpm, "seed": plan.seed, "index": plan.index,
        "sample_rate": plan.sample_rate, "seconds": plan.seconds, "sections": plan.sections,
        "section_beats": SECTION_BEATS, **_gain_summary(scale), "stems": stems_meta,
    }
    files[f"{name}/{name}_METADATA.yaml"] = yaml.safe_dump(meta, sort_keys=False).encode("utf-8")
    summary = {"name": name, "index": plan.index, "status": "written", "genre": plan.genre,
               "soundfont": soundfont_name(soundfonts[plan.soundfont % len(soundfonts)]),
               "instruments": sorted({p.instrument for p in plan.parts}), "stems": len(plan.parts),
               "notes": sum(len(p.notes) for p in plan.parts), "seconds": plan.seconds}
    return files, summary


@dataclasses.dataclass(frozen=True)
class SynthSettings:
    """Everything a song depends on besides its index: song ``i`` of equal settings is the same
    wherever it is rendered. SoundFont entries are paths (local or ``gs://``) or None (bundled)."""

    seed: int = 0
    seconds: float = DEFAULT_SECONDS
    sample_rate: int = 44_100
    soundfonts: tuple[str | None, ...] = (None,)
    drum_soundfonts: tuple[str, ...] = ()
    mixing: str = "standard"
    genres: tuple[str, ...] | None = None
    chorale_share: float = CHORALE_SHARE
    drum_kit_share: float = DRUM_KIT_SHARE
    pianos: tuple[str, ...] = ()  # recorded multi-sampled pianos (tfmusic.data.multisamples)
    piano_sample_share: float = PIANO_SAMPLE_SHARE

    def plan(self, index: int) -> SongPlan:
        return plan_song(self.seed, index, self.seconds, self.sample_rate, soundfonts=len(self.soundfonts),
                         drum_soundfonts=len(self.drum_soundfonts), mixing_style=self.mixing,
                         genres=self.genres, chorale_share=self.chorale_share, drum_kit_share=self.drum_kit_share,
                         piano_sets=len(self.pianos), piano_sample_share=self.piano_sample_share)

    def render(self, index: int) -> tuple[dict[str, bytes], dict]:
        return render_files(self.plan(index), self.soundfonts, self.drum_soundfonts, self.pianos)

    def all_soundfonts(self) -> tuple[str | None, ...]:
        return tuple(self.soundfonts) + tuple(self.drum_soundfonts) + tuple(self.pianos)

    def manifest_params(self, infos: list[dict]) -> dict:
        n, d = len(self.soundfonts), len(self.soundfonts) + len(self.drum_soundfonts)
        params = {"seed": self.seed, "seconds": self.seconds, "sample_rate": self.sample_rate,
                  "mixing": self.mixing, "genres": list(self.genres or compose.GENRE_NAMES),
                  "chorale_share": self.chorale_share, "drum_kit_share": self.drum_kit_share,
                  "soundfonts": infos[:n], "drum_soundfonts": infos[n:d]}
        if self.pianos:  # (absent otherwise: manifests of jobs without recorded pianos read as they did)
            params.update(piano_sample_share=self.piano_sample_share, pianos=infos[d:])
        return params


def _gain_summary(scale) -> dict:
    """The master gain as metadata: a number (dry songs) or the limiter curve's range in dB."""
    if np.ndim(scale) == 0:
        return {"mix_scale": round(float(scale), 6)}
    db = 20 * np.log10(np.maximum(np.asarray(scale, dtype=np.float64), 1e-12))
    return {"master_gain_db": {"max": round(float(db.max()), 2), "min": round(float(db.min()), 2),
                               "median": round(float(np.median(db)), 2)}}


def render_song(plan: SongPlan, out_dir: str | os.PathLike, soundfonts: Sequence[str | None] = (None,),
                drum_soundfonts: Sequence[str] = (), pianos: Sequence[str] = ()) -> dict:
    """Render ``plan`` into ``out_dir/<name>/`` (local or remote, MedleyDB layout); returns the summary.
    (Outside Beam; the job stages the same files through :func:`render_and_stage`.)"""
    files, summary = render_files(plan, soundfonts, drum_soundfonts, pianos)
    for rel, data in files.items():
        storage.write_bytes(storage.join(os.fspath(out_dir), *rel.split("/")), data)
    return summary


def render_and_stage(index: int, staging: str, settings: SynthSettings,
                     soundfont_sha256: Sequence[str | None] = ()) -> dict:
    """Worker side of one song: plan, render in memory, stage every file. A failing song becomes a
    reject (nothing of it is finalized) instead of killing the job."""
    for font, sha in zip(settings.all_soundfonts(), soundfont_sha256):
        check_soundfont(font, sha)
    try:
        files, summary = settings.render(index)
        entries = [beam_io.stage_bytes(staging, rel, data) for rel, data in sorted(files.items())]
    except Exception as err:  # reported in the manifest, the other songs still render
        log.exception("song %d failed", index)
        return {"summary": {"name": song_name(settings.seed, index), "index": index, "status": "rejected",
                            "reason": f"{type(err).__name__}: {err}"}, "files": []}
    summary["files"] = sorted(files)
    return {"summary": summary, "files": entries}


def SynthesizeStems(out_dir: str, songs: int, settings: SynthSettings, *,  # noqa: N802
                    soundfont_infos: list[dict] | None = None, run_id: str | None = None, progress: bool = False):
    """PTransform (apply to the pipeline root): render ``songs`` songs into ``out_dir``; its output is
    one element, the path of the finished ``synth_manifest.json``. ``out_dir`` must be prepared
    (:func:`prepare`) by the driver first; ``soundfont_infos`` are the driver's checks
    (:func:`soundfont_info`), whose sha256 every worker verifies."""
    import apache_beam as beam

    from tfmusic.beam_options import progress_dofn

    staging = beam_io.staging_dir(out_dir, run_id or beam_io.new_run_id())
    infos = soundfont_infos or [{"name": soundfont_name(f), "sha256": None} for f in settings.all_soundfonts()]
    shas = [info["sha256"] for info in infos]
    params = {"job": "synthesize_stems", **settings.manifest_params(infos), "layout": "medleydb"}

    class _Synthesize(beam.PTransform):
        def expand(self, root):
            rendered = (root
                        | "Songs" >> beam.Create(list(range(songs)), reshuffle=True)
                        | "RenderAndStage" >> beam.ParDo(progress_dofn(
                            lambda i: render_and_stage(i, staging, settings, shas),
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
    soundfonts: Sequence[str | os.PathLike | None] | None = None,
    drum_soundfonts: Sequence[str | os.PathLike] = (),
    mixing: str = "standard",
    genres: Sequence[str] | None = None,
    chorale_share: float = CHORALE_SHARE,
    drum_kit_share: float = DRUM_KIT_SHARE,
    pianos: Sequence[str | os.PathLike] = (),
    piano_sample_share: float = PIANO_SAMPLE_SHARE,
) -> dict:
    """The Beam job: render ``songs`` songs in parallel into ``out_dir`` (local or ``gs://``...);
    writes ``synth_manifest.json``. ``soundfonts`` default to :func:`default_soundfonts`; an entry
    None or ``"bundled"`` is pretty_midi's TimGM6mb. Returns the manifest with this run's
    ``wall_seconds`` added (not written); with ``--template_location`` only the Dataflow template is
    written and ``{"template_location", "out"}`` is returned."""
    from tfmusic.beam_options import flag_value, run_pipeline
    from tfmusic.data import mixing as mixing_module
    from tfmusic.data import multisamples
    from tfmusic.beam_options import check_worker_path, remote_runner

    if songs < 1:
        raise ValueError(f"songs must be >= 1, got {songs}")
    if sample_rate not in SAMPLE_RATES:
        raise ValueError(f"sample rate must be one of {SAMPLE_RATES}, got {sample_rate}")
    if not 5.0 <= seconds <= 600.0:
        raise ValueError(f"seconds must be within [5, 600], got {seconds}")
    if mixing not in mixing_module.STYLES:
        raise ValueError(f"mixing must be one of {', '.join(mixing_module.STYLES)}, got {mixing!r}")
    if not 0.0 <= chorale_share <= 1.0:
        raise ValueError(f"chorale share must be within [0, 1], got {chorale_share}")
    if not 0.0 <= drum_kit_share <= 1.0:
        raise ValueError(f"drum kit share must be within [0, 1], got {drum_kit_share}")
    if not 0.0 <= piano_sample_share <= 1.0:
        raise ValueError(f"piano sample share must be within [0, 1], got {piano_sample_share}")
    for genre in genres or ():
        compose.genre_by_name(genre)
    start = time.time()
    out = storage.check_path(out_dir, what="output")
    check_worker_path(out, "--out", beam_args)

    def checked(font, flag):
        if font is None or font == BUNDLED:  # installed on every worker with pretty_midi
            return None
        font = storage.check_path(os.fspath(font), what="soundfont")
        font = os.path.abspath(font) if storage.is_local(font) else font
        check_worker_path(font, flag, beam_args)
        return font

    if not soundfonts:  # remote workers have the bundled font (pretty_midi), not this machine's Debian one
        soundfonts = [None] if remote_runner(beam_args) else default_soundfonts()
    fonts = tuple(checked(f, "--soundfont") for f in soundfonts)
    kits = [f for f in fonts if is_drum_kit(f)]
    if kits:
        raise ValueError(f"--soundfont {kits[0]}: a drum kit folder plays only drums; give it as --drum-soundfont")
    drums = tuple(checked(f, "--drum-soundfont") for f in drum_soundfonts)
    if None in drums:
        raise ValueError("--drum-soundfont wants a drum-kit SoundFont file, not the bundled GM font")
    piano_sets = tuple(checked(f, "--piano-samples") for f in pianos)
    for folder in piano_sets:
        if not (folder and multisamples.is_multisample_set(folder)):  # (a local or mounted folder)
            raise ValueError(f"--piano-samples {folder}: not a multi-sampled instrument folder (no samples.json "
                             "beside <note><octave>v<layer> files; `make sample-sets` unpacks the Salamander piano)")
    settings = SynthSettings(seed, seconds, sample_rate, fonts, drums, mixing,
                             tuple(genres) if genres else None, chorale_share, drum_kit_share, piano_sets,
                             piano_sample_share)
    infos = [soundfont_info(f) for f in settings.all_soundfonts()]
    chorale_paths()  # fail early (and warm the corpus cache) before workers start
    out = prepare(out)
    finished = run_pipeline(lambda p: p | "SynthesizeStems" >> SynthesizeStems(
        out, songs, settings, soundfont_infos=infos, progress=progress), beam_args)
    if not finished:
        return {"template_location": flag_value(beam_args, "--template_location"), "out": out}
    manifest = read_manifest(out)
    manifest["wall_seconds"] = round(time.time() - start, 2)
    return manifest
