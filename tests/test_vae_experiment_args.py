"""The VAE experiment scripts reject bad arguments before any training starts (cheap: no TF work)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import experiment_dmelodies  # noqa: E402
import experiment_vae  # noqa: E402
import experiment_vae_plots  # noqa: E402


@pytest.mark.parametrize("argv", [["--images", "0"], ["--images", "10", "--mnist-steps", "-1"],
                                  ["--seeds", "a,b"]])
def test_experiment_vae_bad_arguments(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        experiment_vae.main(["--out", str(tmp_path)] + argv)
    assert err.value.code == 2
    assert "error" in capsys.readouterr().err


def test_plots_needs_a_trained_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        experiment_vae_plots.main(["--run", f"AR-VAE={tmp_path}", "--out", str(tmp_path)])
    assert err.value.code == 2
    assert "model.keras" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--archs", "mlp"], ["--objectives", "beta,foo"], ["--steps", "50"]])
def test_experiment_dmelodies_bad_arguments(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        experiment_dmelodies.main(["--out", str(tmp_path)] + argv)
    assert err.value.code == 2


def test_image_budget_fractions():
    # B.2: 100 epochs of batch 128 over 516,096 dSprites / 60,000 Morpho-MNIST training images
    assert experiment_vae.PAPER_IMAGE_STEPS == {"sprites": 403_200, "mnist": 46_900}


def test_dmelodies_table_merges_earlier_rows_at_the_same_budget(tmp_path):
    import json

    def scored(arch, objective, steps):
        d = tmp_path / f"{arch}_{objective}_seed0"
        d.mkdir()
        (d / "evaluation.json").write_text(json.dumps({"arch": arch, "objective": objective, "seed": 0,
                                                       "steps": steps}))

    scored("cnn", "beta", 100)
    scored("cnn", "factor", 100)
    scored("cnn", "annealed", 300)  # another budget: not merged
    done = [{"arch": "cnn", "objective": "factor", "seed": 0, "steps": 100}]  # redone now: not duplicated
    found = experiment_dmelodies.earlier_results(tmp_path, 100, 0, done)
    assert [(r["arch"], r["objective"]) for r in found] == [("cnn", "beta")]
    # rows scored before --weights existed were scored with the best-loss model: not merged into a final-weights table
    assert experiment_dmelodies.earlier_results(tmp_path, 100, 0, done, "final") == []
    assert len(experiment_dmelodies.earlier_results(tmp_path, 100, 0, done, "best")) == 1


def test_dmelodies_rejects_unknown_weights(tmp_path):
    with pytest.raises(SystemExit) as err:
        experiment_dmelodies.main(["--out", str(tmp_path), "--weights", "last"])
    assert err.value.code == 2


def test_a_finished_run_is_reused_only_at_its_own_budget(tmp_path):
    """experiment_dmelodies / experiment_vae --images: a run trained with other --steps (or batch size) is refused,
    not scored under this invocation's budget."""
    import json

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"trainer": {"steps": 1500, "batch_size": 512}}))
    (run / "checkpoints" / "ckpt-1500.index").touch()
    experiment_vae.check_reusable(run, 1500, 512)
    for steps, batch in ((3000, 512), (1500, 128)):
        with pytest.raises(SystemExit, match="already trained with"):
            experiment_vae.check_reusable(run, steps, batch)
    (run / "checkpoints" / "ckpt-1500.index").unlink()  # stopped before its budget
    (run / "checkpoints" / "ckpt-750.index").touch()
    with pytest.raises(SystemExit, match=r"last checkpoint step 750 \(not 1500\)"):
        experiment_vae.check_reusable(run, 1500, 512)
