"""Hand-written mutation check: does the test suite notice when a default feature or a core numeric
routine is broken? (``make mutants``; the table and how to read it: docs/TESTING.md)

Why hand-written and not mutmut: the features that matter here (fused BatchNorm/LSTM/Adam, recomputation,
batch splitting, mixed-precision loading) compute the same numbers as the code they replace when they
silently fall back, so the interesting mutation is "the feature does nothing", which random operator
swaps rarely produce; and each mutant names the small test meant to kill it, so the whole check runs
in minutes instead of running the 10-minute suite per mutant.

Each mutant is an exact string replacement in one file. The checkout (tracked and untracked, not
ignored, files of the working tree) is copied once to a temporary folder; the killing tests must pass
there unmutated (the baseline), then each mutant is applied to the copy, its tests run with pytest in a
fresh process, and the file is restored. ``killed``: the tests failed; ``survived``: they passed; exit
status 1 if any mutant survived or could not run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300  # per pytest run; a mutant that hangs its test counts as killed (as mutmut counts it)


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str
    change: str  # what the mutation does, in words
    tests: tuple[str, ...]  # pytest node ids that must fail


MUTANTS = (
    # -- features on by default -----------------------------------------------------------------------
    Mutant("fused-lstm-falls-back", "tfmusic/training/fused_lstm.py",
           "        if not training or initial_state is not None or mask is not None:",
           "        if True or not training or initial_state is not None or mask is not None:",
           "the fused LSTM always runs Keras' own call",
           ("tests/test_fused_lstm.py::test_fused_forward_and_gradients_match_keras[False]",)),
    Mutant("fused-batchnorm-falls-back", "tfmusic/training/fused_norm.py",
           "        if (not (training and layer.trainable) or mask is not None",
           "        if True or (not (training and layer.trainable) or mask is not None",
           "the fused BatchNorm always runs Keras' own call",
           ("tests/test_fused_norm.py::test_fused_training_step_matches_keras",)),
    Mutant("fused-adam-falls-back", "tfmusic/training/fused_adam.py",
           '        if isinstance(gradient, tf.IndexedSlices) or variable.dtype != "float32":',
           '        if True or isinstance(gradient, tf.IndexedSlices) or variable.dtype != "float32":',
           "the fused Adam always runs Keras' update_step",
           ("tests/test_fused_adam.py::test_fused_update_equals_keras",)),
    Mutant("recompute-does-nothing", "tfmusic/training/recompute.py",
           "        return tf.recompute_grad(run)(*[flat[i] for i in where])",
           "        return run(*[flat[i] for i in where])",
           "recomputed layers keep their activations (no tf.recompute_grad)",
           ("tests/test_perf_recompute.py::test_trainer_recompute_keeps_dropout_masks_and_undoes",)),
    Mutant("trainer-skips-recompute", "tfmusic/training/rewrites.py",
           "    if config.recompute:", "    if False:",
           "the trainer never applies trainer.recompute",
           ("tests/test_training_rewrites.py",)),
    Mutant("fused-lstm-off-by-default", "tfmusic/training/config.py",
           "    fused_lstm: bool = True", "    fused_lstm: bool = False",
           "trainer.fused_lstm defaults to off",
           ("tests/test_training_rewrites.py",)),
    Mutant("fused-batchnorm-off-by-default", "tfmusic/training/config.py",
           "    fused_batchnorm: bool = True", "    fused_batchnorm: bool = False",
           "trainer.fused_batchnorm defaults to off",
           ("tests/test_training_rewrites.py",)),
    Mutant("trainer-skips-fused-adam", "tfmusic/training/rewrites.py",
           "    if config.fused_adam:", "    if False:",
           "the trainer never applies trainer.fused_adam",
           ("tests/test_tensorboard_run.py::test_graph_of_the_training_step",)),
    Mutant("serving-no-large-batch-split", "tfmusic/serving/config.py",
           "        if self.enable_large_batch_splitting and self.max_execution_batch_size:", "        if False:",
           "BatchingConfig.execution_batch_size ignores enable_large_batch_splitting",
           ("tests/test_serving_conformance.py::test_large_batch_splitting",)),
    Mutant("serving-split-outputs-reversed", "tfmusic/serving/batching.py",
           "np.concatenate([t.result[k] for t in tasks], axis=0)",
           "np.concatenate([t.result[k] for t in reversed(tasks)], axis=0)",
           "a split request's outputs are concatenated in reverse order",
           ("tests/test_serving_conformance.py::test_split_request_runs_in_execution_sized_batches_in_order",)),
    Mutant("mixed-precision-load-drops-weights", "tfmusic/models/files.py",
           "    if len(model.weights) != before:", "    if False:",
           "a model saved under a mixed policy loads without its sub-models' weights",
           ("tests/test_mixed_precision_inference.py::test_mixed_precision_models_separate_like_float32"
            "[mixed_bfloat16]",)),
    # -- core numeric routines ------------------------------------------------------------------------
    Mutant("stft-imaginary-sign", "tfmusic/audio/stft.py",
           "    sin_b = ops.take(ops.convert_to_tensor(-sin_t, dtype=dtype), idx) * window",
           "    sin_b = ops.take(ops.convert_to_tensor(sin_t, dtype=dtype), idx) * window",
           "the forward STFT's imaginary part has the wrong sign",
           ("tests/test_stft.py::test_matches_tf_signal_stft",)),
    Mutant("stft-symmetric-window", "tfmusic/audio/stft.py",
           "    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)",
           "    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / (n_fft - 1))",
           "a symmetric Hann window instead of the periodic one",
           ("tests/test_stft.py::test_matches_tf_signal_stft",)),
    Mutant("bss-sar-wrong-projection", "tfmusic/evaluation/bss_v4.py",
           "        sar = _db(energy(p_all), energy(est - p_all))",
           "        sar = _db(energy(p_all), energy(est - p_target))",
           "SAR's artifact error uses the target-only projection",
           ("tests/test_bss_v4.py::test_matches_museval_bss_eval",)),
    Mutant("activity-channels-averaged", "tfmusic/data/stems/activity.py",
           "    conf = conf.max(axis=0)[1:-1]", "    conf = conf.mean(axis=0)[1:-1]",
           "activity combines channels by mean instead of max",
           ("tests/test_stems_taxonomy_activity.py::test_hard_panned_stereo_counts_as_active",)),
    Mutant("activity-sigmoid-offset-sign", "tfmusic/data/stems/activity.py",
           "    conf = 1.0 / (1.0 + np.exp(-THETA * (env - OFFSET)))",
           "    conf = 1.0 / (1.0 + np.exp(-THETA * (env + OFFSET)))",
           "the confidence sigmoid is centred at -0.15 instead of 0.15",
           ("tests/test_stems_taxonomy_activity.py::test_silence_is_inactive_and_tone_is_active",)),
    Mutant("dmelodies-arpeggio-direction", "tfmusic/data/dmelodies/factors.py",
           "    degrees = np.where(down, degrees[:, :, ::-1], degrees)",
           "    degrees = np.where(down, degrees, degrees[:, :, ::-1])",
           "the arpeggio factors' up/down are swapped in the token encoder",
           ("tests/test_dmelodies.py::test_rows_0_1_2999",)),
    Mutant("dmelodies-bar2-rhythm", "tfmusic/data/dmelodies/factors.py",
           "    bar2 = RHYTHM_ONSETS[f[:, 4]] + 8", "    bar2 = RHYTHM_ONSETS[f[:, 3]] + 8",
           "the second bar is encoded with the first bar's rhythm",
           ("tests/test_dmelodies.py::test_random_sample_matches_music21_generation",)),
    Mutant("splits-valid-test-swapped", "tfmusic/data/stems/splits.py",
           'zip(("test", "valid", "train"), (counts[2], counts[1], counts[0]))',
           'zip(("test", "valid", "train"), (counts[1], counts[2], counts[0]))',
           "the valid and test song counts are swapped",
           ("tests/test_stems_splits.py",)),
    Mutant("splits-ignore-seed", "tfmusic/data/stems/splits.py",
           'hashlib.sha256(f"{int(seed)}:{song_id}".encode())', 'hashlib.sha256(f"{song_id}".encode())',
           "song ranks no longer depend on the seed",
           ("tests/test_stems_splits.py",)),
    Mutant("drumkit-no-round-robin", "tfmusic/data/drumkits.py",
           "    return matching[k % len(matching)]", "    return matching[0]",
           "a kit's layers sharing a velocity range are never alternated",
           ("tests/test_drumkits.py::test_round_robin_alternates_layers_sharing_a_range",)),
    Mutant("drumkit-no-choke", "tfmusic/data/drumkits.py",
           "        if inst.cls in _CHOKERS:", "        if False:",
           "a closed hi-hat no longer cuts the ringing open one",
           ("tests/test_drumkits.py::test_toms_ordered_low_to_high_and_open_hat_choked",)),
    Mutant("patch-loop-ignored", "tfmusic/data/patches.py",
           "    if sample.loop is not None:\n        start, end = sample.loop", "    if False:\n        start, end = sample.loop",
           "a held note stops at the end of its sample instead of looping",
           ("tests/test_patches.py::test_sampler_plays_the_note_pitch_and_loops_while_held",)),
    Mutant("augment-limiter-off", "tfmusic/data/stems/dataset.py",
           "            if aug.limiter > 0:", "            if False:",
           "the training pipeline never applies the LimitAug limiter",
           ("tests/test_augment.py::test_pipeline_applies_limiter_and_eq_by_default",)),
    Mutant("augment-eq-off", "tfmusic/data/stems/dataset.py",
           "            stem = augment_ops.random_eq(stem, key + [0, 300], aug.eq, aug.eq_db, rate)\n", "",
           "the training pipeline never applies the per-stem EQ",
           ("tests/test_augment.py::test_pipeline_applies_limiter_and_eq_by_default",)),
    Mutant("augment-remix-off", "tfmusic/data/stems/dataset.py",
           "if aug.remix else tf.range(group)", "if False else tf.range(group)",
           "stems are never drawn from other songs",
           ("tests/test_augment.py::test_remix_draws_stems_from_other_songs",)),
    Mutant("pretrained-sha-unchecked", "tfmusic/models/pretrained.py",
           "    if got != entry[\"sha256\"]:", "    if False:",
           "a shipped model whose file changed is loaded anyway",
           ("tests/test_pretrained.py::test_registry_records_sha_and_refuses_a_changed_file",)),
    Mutant("iass-mask-relu-by-default", "tfmusic/training/separation.py",
           'DEFAULT_MODEL_KWARGS = {"iass": {"mask_activation": "softplus"}}', 'DEFAULT_MODEL_KWARGS = {"iass": {}}',
           "IASS trains the paper's ReLU mask by default",
           ("tests/test_training_separation.py::test_train_iass_cli",)),
    Mutant("activity-gate-not-calibrated", "tfmusic/training/activity_gate.py",
           "    threshold = choose(total)", "    threshold = 0.5",
           "the gate keeps 0.5 whatever the validation split says",
           ("tests/test_training_separation.py::test_activity_threshold_is_chosen_on_the_validation_split",)),
    Mutant("init-from-copies-nothing", "tfmusic/training/separation.py",
           "            self.model.set_weights(loaded.get_weights())", "            pass",
           "init_from starts from random weights",
           ("tests/test_training_separation.py::test_train_iass_init_from_fine_tunes",)),
    Mutant("recorded-piano-ignored", "tfmusic/data/synth.py",
           "    if part.instrument == tx.PIANO and plan.piano_samples >= 0 and pianos:", "    if False:",
           "a song's piano never comes from the recorded piano",
           ("tests/test_multisamples.py::test_synthesized_song_plays_its_piano_from_the_set",)),
)


def _copy_checkout(dst: Path) -> None:
    """The working tree's tracked and untracked, not ignored, files (what a commit of it would hold)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = REPO / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name, follow_symlinks=False)


def _env(root: Path) -> dict[str, str]:
    """Imports from the copy (not an installed or editable tfmusic); no bytecode caches, so a restored file
    of the mutant's size and second can never be read from a stale .pyc."""
    return {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def _imports_from(root: Path) -> bool:
    done = subprocess.run([sys.executable, "-c", "import tfmusic; print(tfmusic.__file__)"], cwd=root,
                          env=_env(root), capture_output=True, text=True, check=True)
    return Path(done.stdout.strip()).resolve().is_relative_to(root.resolve())


def _pytest(root: Path, tests: tuple[str, ...]) -> tuple[int, float]:
    """pytest's exit status (-1 on timeout) and the seconds it took, run in ``root`` on ``root``'s code."""
    env = _env(root)
    start = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                              cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        code = done.returncode
    except subprocess.TimeoutExpired:
        code = -1
    return code, time.monotonic() - start


def _check(mutants: tuple[Mutant, ...]) -> None:
    for m in mutants:
        count = (REPO / m.path).read_text().count(m.old)
        if count != 1:
            raise SystemExit(f"mutant {m.name}: its text occurs {count} times in {m.path} (must be once): update it")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="run only these mutants (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        parser.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
    mutants = tuple(m for m in MUTANTS if not args.names or m.name in args.names)
    if args.list:
        for m in mutants:
            print(f"{m.name}: {m.path}: {m.change} -> {' '.join(m.tests)}")
        return 0
    _check(mutants)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tfmusic-mutants-") as tmp:
        root = Path(tmp)
        _copy_checkout(root)
        if not _imports_from(root):
            print(f"tfmusic does not import from the copy {root}", file=sys.stderr)
            return 1
        baseline = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
        code, seconds = _pytest(root, baseline)
        print(f"baseline: {len(baseline)} killing test(s) on the unmutated copy: exit {code} ({seconds:.0f} s)",
              flush=True)
        if code != 0:
            print("the killing tests must pass before any mutant is meaningful", file=sys.stderr)
            return 1
        rows = []
        for m in mutants:
            target = root / m.path
            original = target.read_text()
            target.write_text(original.replace(m.old, m.new))
            try:
                code, seconds = _pytest(root, m.tests)
            finally:
                target.write_text(original)
            result = {1: "killed", -1: "killed (timeout)", 0: "SURVIVED"}.get(code, f"ERROR (pytest exit {code})")
            rows.append((m, result, seconds))
            print(f"{m.name}: {result} ({seconds:.0f} s)", flush=True)
    print("\n| mutation | file | what it changes | killing test | result | s |\n|---|---|---|---|---|---|")
    for m, result, seconds in rows:
        tests = "<br>".join(f"`{t}`" for t in m.tests)
        print(f"| `{m.name}` | `{m.path}` | {m.change} | {tests} | {result} | {seconds:.0f} |")
    bad = [m.name for m, result, _ in rows if not result.startswith("killed")]
    print(f"\n{len(rows) - len(bad)}/{len(rows)} killed in {time.monotonic() - started:.0f} s"
          + (f"; not killed: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
