"""Copy the experiment's IASS models into ``tfmusic/pretrained`` with their model cards (called by
``experiment_pretrained.py --publish``; the Open-Unmix runs are the baseline and do not ship).

A card says what a user needs before trusting a model: what it separates, what it was trained on
(sample sets and their licences), how long, what it scores on the gap set (unseen instruments and
production) and in distribution, and where it is known to fall short.
"""

from __future__ import annotations

import json
from pathlib import Path

from tfmusic.models import pretrained

RESIDUAL = "other"  # MUSDB's fourth stem: the mixture minus the shipped targets
MIN_GAP_SDR = 1.0  # dB on the gap set: above what a silent estimate scores (0 dB)


def _sdr(summary: dict, method: str, target: str) -> float | None:
    return summary["bss"].get(method, {}).get(target, {}).get("SDR")


def scores(record: dict, target: str) -> dict[str, float]:
    """Median SDR and the gain over the mixture on the gap set and in distribution, activity F1."""
    out = {}
    for key, label in (("gap", "gap"), ("in_distribution", "in-dist")):
        iass, mix = _sdr(record[key], "IASS", target), _sdr(record[key], "input-SDR", target)
        if iass is not None:
            out[f"{label} SDR"] = round(iass, 2)
        if iass is not None and mix is not None:
            out[f"{label} over mixture"] = round(iass - mix, 2)
    f1 = record["gap"].get("activity", {}).get("IASS", {}).get(target, {}).get("f1")
    if f1 is not None:
        out["gap activity F1"] = round(f1, 3)
    return out


def card_text(name: str, target: str, record: dict, model: dict, config: dict) -> str:
    sets = "\n".join(f"| {role} | {s['name']} | {s['package']} | {s['license']} | {s['plays']} |"
                     for role, group in record["sample_sets"].items() for s in group)
    score_rows = "\n".join(f"| {k} | {v} |" for k, v in scores(record, target).items())
    baseline = _sdr(record["gap"], "Open-Unmix", target)
    aug = config.get("augmentation", {})
    return f"""# {name}: IASS {target} separation

**What it does.** Estimates the {target} stem of a song (any length, rate and channel count; mono
model, its mask applied to every channel) and a per-frame {target} activity probability that gates the
mask (instrument-activation-aware source separation, Hung & Lerch, ISMIR 2020). Used by
`tfmusic separate SONG` when no `--model` is given; `other` is written as the mixture minus the
shipped targets.

**Training data.** {record['budget']['songs']} synthesized songs x 20 s (tfmusic's composer and Bach
chorale arrangements, humanized, per-stem production chain, mastered to -14..-8 LUFS), split
{record['budget']['splits']} by song. Instruments come from recorded sample sets and SoundFonts:

| role | sample set | package | licence | plays |
|---|---|---|---|---|
{sets}

"gap" sets were never used in training: the gap set measures what a real song tests, an
unseen instrument and production.

**Training.** {model['steps']} steps{f" ({model['base_steps']} of the previously shipped model, then {model['steps'] - model['base_steps']} fine-tuning it)" if model.get('fine_tuned_from') else ""} of batch {config['trainer']['batch_size']} x {config['segment_seconds']} s
excerpts, lr {config['learning_rate']}, {config.get('model_kwargs', {}).get('mask_activation', 'relu')} mask, seed {config['trainer']['seed']}, float32, on 2 shared CPU cores
({model['train_seconds'] / 3600:.1f} h of training); {"the final weights" if config['trainer'].get('keep_model') == "final"
else "the weights with the lowest validation loss"} (best validation loss seen: {model['best_eval_loss']}). Augmentation: cross-song remix {aug.get('remix')}, per-stem EQ p={aug.get('eq')}
(+-{aug.get('eq_db')} dB), LimitAug limiter p={aug.get('limiter')} (drive {aug.get('limiter_drive_db')} dB).

**Scores** (median over 1 s frames, then songs; BSS Eval v4; dB):

| metric | value |
|---|---|
{score_rows}

Open-Unmix trained on the same data and budget scores {baseline if baseline is None else round(baseline, 2)} dB
on the gap set. Full tables: `bench/experiments/experiment_pretrained.md`.

**Limits.** Trained only on synthesized songs: on real recordings expect lower SDR than on the gap set,
most for instruments and productions unlike the sample sets above. Not trained on speech or on
live recordings with bleed between microphones.
"""


def publish_all(record: dict, runs: dict[str, Path], out: Path, root: Path = pretrained.PRETRAINED_DIR) -> None:
    """Publish into ``root`` each IASS run that passes the criteria below."""
    for name, run in sorted(runs.items()):
        if not name.startswith("iass_"):
            continue
        config = json.loads((run / "config.json").read_text())
        target = config["target"]
        model = record["models"][name]
        got = scores(record, target)
        gain, sdr, home = got.get("gap over mixture"), got.get("gap SDR"), got.get("in-dist over mixture")
        # A model ships only if, on unseen songs, it beats both leaving the song alone and saying nothing
        # (a silent estimate scores 0 dB: an undertrained gate that closes everywhere "beats" a quiet mixture),
        # and beats the mixture on its own test songs too (a gate that silences half the frames there fails).
        if gain is None or gain <= 0 or sdr is None or sdr < MIN_GAP_SDR or home is None or home <= 0:
            print(f"not published: {name} ({model['steps']} steps): gap SDR {sdr} dB, {gain} dB over the mixture; "
                  f"{home} dB over the mixture in distribution")
            continue
        shipped = pretrained.registry(root).get(name, {}).get("scores", {}).get("gap SDR")
        if shipped is not None and sdr < shipped:  # (the same gap set: never replace a model by a worse one)
            print(f"not published: {name} ({model['steps']} steps): gap SDR {sdr} dB is below the shipped "
                  f"model's {shipped} dB")
            continue
        entry = {"target": target, "architecture": "IASS", "default": True, "steps": model["steps"],
                 "train_hours": round(model["train_seconds"] / 3600, 2), "scores": scores(record, target)}
        pretrained.publish(run / "model.keras", name, entry, card_text(name, target, record, model, config),
                           root, residual=RESIDUAL)
        print(f"published {name} ({target}, {model['steps']} steps) into {root}")
