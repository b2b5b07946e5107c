"""IASS vs IASS+pitch vs basic-pitch on held-out synthesized songs: can the multitask head transcribe?

Claims examined (issue 26, after issue 17's head transcribed nothing): the IASS+pitch bass
transcription reaches mir_eval multi-pitch F >= 0.5 (gated by its activity) and at least
basic-pitch's on the mixture, while separating within 0.3 dB SDR of plain IASS at the same budget.

Protocol: synthesize songs (`tfmusic data synthesize`: stems + the MIDI they were rendered from),
preprocess with a song-level split (`tfmusic data preprocess`: records carry 88-key pitch rolls),
train `tfmusic train iass` and `tfmusic train iass_pitch` for one pitched target with the SAME data,
steps, batch size, excerpt length, learning rate and seed (the pitch run then chooses its decision
threshold on the validation split: `pitch_threshold.json`), and on the held-out test songs:
`tfmusic evaluate` (museval SDR medians, activity F1) for both; the IASS+pitch transcription of the
separated target (`tfmusic.evaluation.transcription`: frame-level mir_eval.multipitch P/R/F and
note-onset F1, gated by the predicted activity as `tfmusic separate --transcribe`, and raw); and
basic-pitch 0.4.0 (`bench/basic_pitch_onnx.py`, its ONNX model in onnxruntime) on the mixture and on
the true target stem (its upper reference), scored by the same functions on the same frames.

Budget (`make experiment-pitch`): 24 songs x 12 s (splits 0.7/0.1/0.2, data seed 0), target bass,
2,000 steps per model, batch 2, 3 s excerpts, lr 1e-3, seed 42, no in-training evaluation. Expected
60-90 min on 2 quiet cores: an IASS step at batch 4 x 6 s takes 1.9-2.4 s there (bench/RESULTS.md), so
~0.6-0.9 s at a quarter of the frames; the pitch head adds ~9 % per step (measured on one shared core);
data ~4 min; SDR evaluation, transcription and basic-pitch ~10-15 min.

Resumable: every stage records its wall time in OUT/stages.json; a rerun reuses synthesized songs,
stems and training runs only when their recorded settings match this invocation's (songs, seconds,
splits; steps, batch, excerpt, lr, seed, target and the pitch loss keys), resumes a training run
stopped short from its last checkpoint (every 250 steps), refuses a run trained at another budget,
and reruns the evaluations whenever a model changed. The table lists every stage with the time the
invocation that ran it measured.

    python bench/experiment_pitch.py --out bench/results/experiment_pitch_2000 --copy-to bench/experiments

Outputs in OUT: synth/, stems/, runs/{iass,iass_pitch}_<target>/, eval/ (museval), transcription.json,
basic_pitch.json, stages.json, experiment.json and experiment.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from stages import load_average, run_tfmusic

HERE = Path(__file__).resolve().parent
MODELS = {"iass": "IASS", "iass_pitch": "IASS+pitch"}
BASIC_PITCH = {"mixture": "basic-pitch (mixture)", "stem": "basic-pitch (true {target} stem)"}
INVOCATION = time.strftime("%Y-%m-%d %H:%M:%S")


class Stages:
    """OUT/stages.json: every stage behind the current outputs, with the wall time measured by the
    invocation that ran it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict] = json.loads(path.read_text())["stages"] if path.is_file() else []

    def run(self, argv: list[str]) -> None:
        log: list[dict] = []
        run_tfmusic(argv, log)
        self.add(log[-1]["command"], log[-1]["seconds"])

    def add(self, command: str, seconds: float) -> None:
        """Record a finished stage; it replaces an earlier record of the same command (whose outputs it
        replaced), while a resumed training run (``--resume``) is listed beside its first part."""
        self.records = [r for r in self.records if r["command"] != command]
        self.records.append({"command": command, "seconds": round(seconds, 1), "invocation": INVOCATION})
        self.path.write_text(json.dumps({"stages": self.records}, indent=1))

    def timed(self, command: str, fn, *args, **kwargs):
        print(f"\n$ {command}", flush=True)
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        self.add(command, time.perf_counter() - t0)
        return result


def fingerprint(paths: list[Path]) -> list:
    """What the evaluations depend on: each model file's size and modification time."""
    return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in paths]


def dotted(config: dict, key: str):
    for part in key.split("."):
        config = config.get(part, {}) if isinstance(config, dict) else {}
    return None if config == {} else config


def run_state(run_dir: Path, want: dict[str, Any], steps: int, needs: tuple[str, ...]) -> str:
    """"new", "resume" or "done" for a training run directory (module docstring); a run recorded with
    other settings stops the experiment (its row would carry a budget it did not have)."""
    from experiment_vae import _last_checkpoint

    if not (run_dir / "config.json").is_file():
        return "new"
    config = json.loads((run_dir / "config.json").read_text())
    wrong = [f"{k} {dotted(config, k)!r} (not {v!r})" for k, v in want.items() if dotted(config, k) != v]
    if wrong:
        raise SystemExit(f"{run_dir}: trained with {', '.join(wrong)}; rerun with those settings or use a new --out")
    done = _last_checkpoint(run_dir)
    if done > steps:
        raise SystemExit(f"{run_dir}: has a checkpoint at step {done} > {steps}; use a new --out")
    if done == steps and all((run_dir / name).is_file() for name in needs):
        return "done"
    return "resume" if done else "new"


def prepare_data(args, out: Path, stages: Stages) -> tuple[Path, Path]:
    synth, stems = out / "synth", out / "stems"
    manifest = synth / "synth_manifest.json"
    if manifest.is_file():
        have = json.loads(manifest.read_text())
        if (len(have.get("songs", [])), have.get("seconds"), have.get("seed")) != (args.songs, args.seconds, 0):
            raise SystemExit(f"{synth}: holds {len(have.get('songs', []))} songs x {have.get('seconds')} s (seed "
                             f"{have.get('seed')}), not {args.songs} x {args.seconds} s; use a new --out")
    else:
        stages.run(["data", "synthesize", "--out", str(synth), "--songs", str(args.songs), "--seconds",
                    str(args.seconds), "--seed", "0", "--quiet"])
    fractions = [float(x) for x in args.splits.split(",")]
    if (stems / "manifest.json").is_file():
        have = json.loads((stems / "manifest.json").read_text())
        if [float(x) for x in have.get("split_fractions", [])] != fractions:
            raise SystemExit(f"{stems}: split {have.get('split_fractions')}, not {fractions}; use a new --out")
    else:
        stages.run(["data", "preprocess", "--input", str(synth), "--out", str(stems), "--splits", args.splits,
                    "--seed", "0", "--quiet"])
    return synth, stems


def train(args, stems: Path, out: Path, stages: Stages) -> dict[str, Path]:
    runs = {}
    for kind in MODELS:
        run_dir = out / "runs" / f"{kind}_{args.target}"
        runs[kind] = run_dir
        want = {"model": kind, "target": args.target, "data_dir": str(stems), "trainer.steps": args.steps,
                "trainer.batch_size": args.batch_size, "segment_seconds": args.segment_seconds,
                "learning_rate": args.lr, "trainer.seed": args.seed}
        cmd = ["train", kind, "--data", str(stems), "--target", args.target, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--segment-seconds", str(args.segment_seconds),
               "--lr", str(args.lr), "--seed", str(args.seed), "--no-eval", "--run-dir", str(run_dir), "--quiet"]
        needs: tuple[str, ...] = ("model.keras",)
        if kind == "iass_pitch":
            want.update(pitch_weight=args.pitch_weight, pitch_pos_weight=args.pitch_pos_weight,
                        pitch_focal_gamma=args.pitch_focal_gamma, threshold_split="valid")
            cmd += ["--pitch-weight", str(args.pitch_weight), "--set", f"pitch_pos_weight={args.pitch_pos_weight}",
                    "--set", f"pitch_focal_gamma={args.pitch_focal_gamma}"]
            needs += ("pitch_threshold.json",)
        state = run_state(run_dir, want, args.steps, needs)
        if state == "done":
            print(f"{run_dir}: trained ({args.steps} steps), reused", flush=True)
            continue
        stages.run(cmd + (["--resume"] if state == "resume" else []))
    return runs


def basic_pitch_scores(song_dirs: list[Path], target: str, stages: Stages) -> dict[str, Any]:
    """basic-pitch on each song's mixture and true target stem, on our frames (module docstring)."""
    import numpy as np
    from basic_pitch_onnx import BasicPitch, transcribe

    from tfmusic.audio.io import read_audio
    from tfmusic.audio.settings import HOP_LENGTH, SAMPLE_RATE
    from tfmusic.evaluation.transcription import (score_transcription, song_reference_notes, song_target_audio,
                                                  summarize)

    model = BasicPitch()
    results: dict[str, Any] = {}
    for source in BASIC_PITCH:
        def score_all():
            per_song = {}
            for song in song_dirs:
                if source == "mixture":
                    audio = read_audio(str(song / f"{song.name}_MIX.wav"), SAMPLE_RATE)[0]
                else:
                    audio = song_target_audio(str(song), target, SAMPLE_RATE)
                    if audio is None:  # the song has no target stem: silence is the true stem
                        audio = np.zeros_like(read_audio(str(song / f"{song.name}_MIX.wav"), SAMPLE_RATE)[0])
                frames = 1 + audio.shape[-1] // HOP_LENGTH  # our center=True frames
                got = transcribe(audio, SAMPLE_RATE, model, np.arange(frames) * HOP_LENGTH / SAMPLE_RATE)
                per_song[song.name] = score_transcription(got["roll"], got["notes"],
                                                          song_reference_notes(str(song), target),
                                                          SAMPLE_RATE, HOP_LENGTH)
            return {"per_song": per_song, "summary": summarize(per_song)}

        results[source] = stages.timed(f"basic-pitch ({source}, {len(song_dirs)} test songs, nmp.onnx)", score_all)
    results["model"] = str(model.path)
    return results


def number(value) -> float | None:
    """A summary cell: a number, or a dict holding its ``median``."""
    if isinstance(value, dict):
        value = value.get("median")
    return None if value is None else float(value)


def lookup(table: dict, method: str, target: str) -> dict:
    """``table[method][target]`` or ``table[target][method]`` (both summary layouts exist)."""
    if method in table and target in table[method]:
        return table[method][target]
    return table.get(target, {}).get(method, {})


def rows(summary: dict, transcription: dict, basic: dict, target: str) -> list[dict]:
    out = []
    for kind, name in MODELS.items():
        bss, act = lookup(summary.get("bss", {}), name, target), lookup(summary.get("activity", {}), name, target)
        row = {"method": name, "SDR": number(bss.get("SDR")), "SIR": number(bss.get("SIR")),
               "SAR": number(bss.get("SAR")), "activity_f1": number(act.get("f1")), "tracks": bss.get("tracks")}
        if kind == "iass_pitch":
            for gate, result in transcription.items():
                row.update(pitch_scores(result["summary"], gate))
        out.append(row)
    for source, name in BASIC_PITCH.items():
        out.append({"method": name.format(target=target), **pitch_scores(basic[source]["summary"], "gated")})
    return out


def pitch_scores(summary: dict, gate: str) -> dict[str, float]:
    mp = summary["multipitch"]
    return {f"pitch_p_{gate}": mp["precision"], f"pitch_r_{gate}": mp["recall"], f"pitch_f_{gate}": mp["f_measure"],
            f"note_f_{gate}": summary["notes"]["f_measure"]}


def verdicts(record: dict) -> list[str]:
    """The issue's three claims, checked on the table."""
    r = {row["method"]: row for row in record["rows"]}
    pitch, plain, bp = r["IASS+pitch"], r["IASS"], r["basic-pitch (mixture)"]
    f, bf = pitch.get("pitch_f_gated"), bp.get("pitch_f_gated")
    sdr = None if pitch["SDR"] is None or plain["SDR"] is None else pitch["SDR"] - plain["SDR"]

    def says(ok):
        return "n/a" if ok is None else ("yes" if ok else "NO")

    return [f"- IASS+pitch multi-pitch F (gated) >= 0.5: {says(None if f is None else f >= 0.5)} ({fmt(f, 3)})",
            f"- ... and >= basic-pitch on the mixture: {says(None if f is None or bf is None else f >= bf)} "
            f"({fmt(f, 3)} vs {fmt(bf, 3)})",
            f"- SDR within 0.3 dB of plain IASS: {says(None if sdr is None else abs(sdr) <= 0.3)} "
            f"(IASS+pitch - IASS = {fmt(sdr)} dB)"]


def fmt(v, digits=2) -> str:
    return "n/a" if v is None or v != v else f"{v:.{digits}f}"


def markdown(record: dict) -> str:
    b = record["budget"]
    th = record.get("pitch_threshold") or {}
    lines = ["# Experiment: IASS vs IASS+pitch vs basic-pitch (synthesized multitrack set)", "",
             f"Data: {b['songs']} songs x {b['seconds']} s (splits {b['splits']}, data seed 0), test songs: "
             f"{record['test_songs']}. Target {b['target']}; per model {b['steps']} steps, batch {b['batch_size']}, "
             f"{b['segment_seconds']} s excerpts, lr {b['lr']}, seed {b['seed']}; IASS+pitch: pitch_weight "
             f"{b['pitch_weight']}, pitch_pos_weight {b['pitch_pos_weight']}, pitch_focal_gamma "
             f"{b['pitch_focal_gamma']}, decision threshold {fmt(th.get('threshold'))} chosen on the validation "
             f"split (frame F1 there {fmt(th.get('f1'), 3)}; {fmt(th.get('f1_at_0.5'), 3)} at 0.5). basic-pitch "
             f"0.4.0 (`nmp.onnx`, onnxruntime) with its defaults (onset 0.5, frame 0.3, min note 127.7 ms).",
             f"Machine: {record['machine']}; load average (1/5/15 min) at start {record['load_start']}, at end "
             f"{record['load_end']}. Wall time of this invocation {record['total_seconds']:.0f} s "
             f"({record['total_seconds'] / 60:.1f} min); all stages, each timed by the invocation that ran it: "
             f"{record['stage_seconds']:.0f} s ({record['stage_seconds'] / 60:.1f} min).", "",
             "| stage | wall s | timed by |", "|---|---|---|"]
    lines += [f"| `{s['command']}` | {s['seconds']} | "
              f"{'this invocation' if s['invocation'] == INVOCATION else 'the invocation of ' + s['invocation']} |"
              for s in record["stages"]]
    lines += ["", f"## Results ({b['target']}, held-out test songs)", "",
              "SDR/SIR/SAR: museval BSS Eval v4 medians (1 s frames, then songs), `tfmusic evaluate`. Activity F1: "
              "frame level against the activity labels. Pitch: mir_eval.multipitch frame-level F-measure "
              "(precision / recall) on our frames (hop 1024 at 44.1 kHz) and mir_eval.transcription note-onset F1 "
              "(50 ms, offsets ignored) against the song's MIDI, means over test songs with target notes. "
              "IASS+pitch: gated by its predicted activity (as `tfmusic separate --transcribe`) and raw; "
              "basic-pitch: its frame output >= 0.3 read at our frame times, and its own note decoding.", "",
              "| method | SDR | SIR | SAR | activity F1 | pitch F | pitch P / R | note F1 | pitch F (raw) "
              "| note F1 (raw) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in record["rows"]:
        pr = f"{fmt(r.get('pitch_p_gated'), 3)} / {fmt(r.get('pitch_r_gated'), 3)}" if "pitch_p_gated" in r else "n/a"
        lines.append(f"| {r['method']} | {fmt(r.get('SDR'))} | {fmt(r.get('SIR'))} | {fmt(r.get('SAR'))} "
                     f"| {fmt(r.get('activity_f1'), 3)} | {fmt(r.get('pitch_f_gated'), 3)} | {pr} "
                     f"| {fmt(r.get('note_f_gated'), 3)} | {fmt(r.get('pitch_f_raw'), 3)} "
                     f"| {fmt(r.get('note_f_raw'), 3)} |")
    lines += ["", "## The issue's claims", ""] + verdicts(record)
    lines += ["", "Plain IASS has no pitch head and basic-pitch separates nothing (n/a). The numbers hold for this "
              "budget and this synthesized set, not for what either model reaches with a full training budget."]
    return "\n".join(lines) + "\n"


def evaluate(args, out: Path, stems: Path, synth: Path, runs: dict[str, Path], stages: Stages):
    """`tfmusic evaluate` in the background while the transcription is scored here (2 cores); both are
    reused while the models they scored are unchanged."""
    from tfmusic.evaluation.transcription import pitch_curves, score_curves

    key = fingerprint([runs[k] / "model.keras" for k in MODELS])
    eval_dir, done_file = out / "eval", out / "eval" / "models.json"
    cmd = ["evaluate", "--data", str(stems), "--split", "test", "--out", str(eval_dir), "--oracles", args.oracles,
           "--quiet"] + [a for kind, name in MODELS.items() for a in ("--model", f"{name}={runs[kind]}")]
    evaluation = None
    if not (done_file.is_file() and json.loads(done_file.read_text()) == key):
        shutil.rmtree(eval_dir, ignore_errors=True)
        print(f"\n$ tfmusic {shlex.join(cmd)}  (in the background)", flush=True)
        eval_start = time.perf_counter()
        evaluation = subprocess.Popen([sys.executable, "-m", "tfmusic", *cmd],
                                      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    manifest = json.loads((stems / "manifest.json").read_text())
    test = sorted(s for s, v in manifest["songs"].items() if v["split"] == "test" and v["status"] == "written")
    song_dirs = [synth / s for s in test]
    cached = out / "transcription.json"
    if cached.is_file() and json.loads(cached.read_text()).get("models") == key:
        transcription = json.loads(cached.read_text())["results"]
    else:
        curves = stages.timed(f"pitch_curves(iass_pitch, {len(test)} test songs, {args.target}): separation",
                              pitch_curves, [str(runs["iass_pitch"])], [str(s) for s in song_dirs], args.target)
        transcription = {gate: score_curves(curves, args.target, gate_by_activity=gate == "gated")
                         for gate in ("gated", "raw")}
        cached.write_text(json.dumps({"models": key, "results": transcription}, indent=1, allow_nan=True))
    basic = basic_pitch_scores(song_dirs, args.target, stages)
    (out / "basic_pitch.json").write_text(json.dumps(basic, indent=1, allow_nan=True))
    if evaluation is not None:
        status = evaluation.wait()
        if status != 0:
            raise SystemExit(f"experiment: tfmusic evaluate failed with exit status {status}")
        stages.add("tfmusic " + shlex.join(cmd) + " (concurrent with the transcription scoring)",
                   time.perf_counter() - eval_start)
        done_file.write_text(json.dumps(key))
    return json.loads((eval_dir / "summary.json").read_text()), transcription, basic, len(test)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "experiment_pitch")
    parser.add_argument("--songs", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--splits", default="0.7,0.1,0.2")
    parser.add_argument("--target", default="bass", help="a pitched instrument (drums have no pitch labels)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--segment-seconds", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pitch-weight", type=float, default=1.0)
    parser.add_argument("--pitch-pos-weight", type=float, default=8.0)
    parser.add_argument("--pitch-focal-gamma", type=float, default=1.0)
    parser.add_argument("--oracles", default="mix", help="`tfmusic evaluate --oracles` (default: mix = input-SDR)")
    parser.add_argument("--copy-to", type=Path, default=None,
                        help="also write experiment.md/.json here as experiment_pitch.md/.json")
    args = parser.parse_args(argv)
    if args.target == "drums":
        parser.error("drums have no pitch labels; pick bass, piano, ...")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    start, load_start = time.perf_counter(), load_average()
    stages = Stages(out / "stages.json")
    synth, stems = prepare_data(args, out, stages)
    runs = train(args, stems, out, stages)
    summary, transcription, basic, n_test = evaluate(args, out, stems, synth, runs, stages)
    threshold_file = runs["iass_pitch"] / "pitch_threshold.json"
    record = {
        "budget": {"songs": args.songs, "seconds": args.seconds, "splits": args.splits, "target": args.target,
                   "steps": args.steps, "batch_size": args.batch_size, "segment_seconds": args.segment_seconds,
                   "lr": args.lr, "seed": args.seed, "pitch_weight": args.pitch_weight,
                   "pitch_pos_weight": args.pitch_pos_weight, "pitch_focal_gamma": args.pitch_focal_gamma},
        "machine": f"{os.cpu_count()} cores (shared), {sys.platform}",
        "load_start": load_start, "load_end": load_average(), "stages": stages.records,
        "total_seconds": time.perf_counter() - start,
        "stage_seconds": sum(s["seconds"] for s in stages.records), "test_songs": n_test,
        "pitch_threshold": json.loads(threshold_file.read_text()) if threshold_file.is_file() else None,
        "rows": rows(summary, transcription, basic, args.target),
        "bss": summary.get("bss"), "activity": summary.get("activity"),
        "transcription": {g: r["summary"] for g, r in transcription.items()},
        "basic_pitch": {s: basic[s]["summary"] for s in BASIC_PITCH},
    }
    text = json.dumps(record, indent=1, allow_nan=True)
    md = markdown(record)
    (out / "experiment.json").write_text(text)
    (out / "experiment.md").write_text(md)
    if args.copy_to:
        args.copy_to.mkdir(parents=True, exist_ok=True)
        (args.copy_to / "experiment_pitch.json").write_text(text)
        (args.copy_to / "experiment_pitch.md").write_text(md)
    print("\n" + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
