"""A tiny run read back the way TensorBoard reads it: every item of the trainer's telemetry is there."""
import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from tensorboard.backend.event_processing import event_accumulator as ea  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

from tests._multiworker_worker import ToyTask  # noqa: E402
from tfmusic.training.config import ConfigError, TrainerConfig, from_dict  # noqa: E402
from tfmusic.training.trainer import Trainer  # noqa: E402

SIZE_GUIDANCE = {ea.TENSORS: 0, ea.HISTOGRAMS: 0, ea.GRAPH: 1}


def _load(path):
    acc = ea.EventAccumulator(str(path), size_guidance=SIZE_GUIDANCE)
    acc.Reload()
    return acc


def _scalar(acc, tag):
    """TF2 scalars are tensor events; the value of each step as a float."""
    return {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tb") / "toy-run"
    cfg = TrainerConfig(steps=6, batch_size=8, eval_every=3, eval_steps=2, log_every=2, seed=3,
                        histograms=True, profile_steps=[4, 5])
    result = Trainer(ToyTask(seed=3), cfg, run_dir, progress=False,
                     run_config={"model": "toy", "learning_rate": 0.01, "trainer": {"batch_size": 8}}).fit()
    assert result.step == 6
    return run_dir


def test_throughput_and_gradient_norm_scalars(run):
    train = _load(run / "tensorboard" / "train")
    tags = set(train.Tags()["tensors"])
    assert {"loss", "lr/adam", "perf/steps_per_second", "perf/examples_per_second", "grad_norm/adam"} <= tags
    steps = _scalar(train, "perf/steps_per_second")
    examples = _scalar(train, "perf/examples_per_second")
    assert sorted(steps) == [2, 4, 6]  # step 1 (graph tracing) is not a sample; window 2 has step 2 only
    for step in steps:
        assert steps[step] > 0 and examples[step] == pytest.approx(8 * steps[step], rel=1e-5)
    norms = _scalar(train, "grad_norm/adam")
    assert all(np.isfinite(v) and v > 0 for v in norms.values())


def test_gradient_norm_is_the_global_norm_of_the_applied_gradient(tmp_path):
    import keras

    from tfmusic.training import telemetry

    opt = keras.optimizers.SGD(0.1)
    grads = [tf.constant([3.0, 0.0]), tf.constant([[4.0]])]
    with telemetry.collect_gradient_norms() as norms:
        telemetry.record_gradients(opt, grads)
    assert float(telemetry.name_gradient_norms(norms, {"sgd": opt})["grad_norm/sgd"]) == pytest.approx(5.0)
    scaled = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1), initial_scale=128.0)
    scaled.build([keras.Variable([0.0, 0.0]), keras.Variable([[0.0]])])
    with telemetry.collect_gradient_norms() as norms:
        telemetry.record_gradients(scaled, [g * 128.0 for g in grads])
    assert float(telemetry.name_gradient_norms(norms, {"sgd": scaled})["grad_norm/sgd"]) == pytest.approx(5.0)
    telemetry.record_gradients(opt, grads)  # outside a training step: nothing, no error


def test_histograms_when_flagged(run, tmp_path):
    train = _load(run / "tensorboard" / "train")
    hist = set(train.Tags()["histograms"]) | {
        t for t in train.Tags()["tensors"] if t.startswith(("weights/", "activations/"))}
    assert any(t.startswith("weights/") and "kernel" in t for t in hist)
    assert len([t for t in hist if t.startswith("activations/")]) == 3  # Dense, Dropout, Dense
    events = train.Tensors(next(t for t in hist if t.startswith("weights/")))
    assert [e.step for e in events] == [3, 6]
    assert tf.make_ndarray(events[0].tensor_proto).shape[-1] == 3  # (bins, [left, right, count])
    # off by default
    plain = tmp_path / "plain"
    Trainer(ToyTask(seed=3), TrainerConfig(steps=2, batch_size=8, eval_every=2, eval_steps=1, log_every=1),
            plain, progress=False).fit()
    tags = _load(plain / "tensorboard" / "train").Tags()["tensors"]
    assert not any(t.startswith(("weights/", "activations/")) for t in tags)
    assert "grad_norm/adam" in tags


def test_graph_of_the_training_step(run):
    """trace_export writes the step's RunMetadata (graphs plugin, "train_step" run metadata)."""
    from tensorflow.core.protobuf import config_pb2

    train = _load(run / "tensorboard" / "train")
    assert train.SummaryMetadata("train_step").plugin_data.plugin_name == "graph_run_metadata_graph"
    (event,) = train.Tensors("train_step")
    meta = config_pb2.RunMetadata.FromString(tf.make_ndarray(event.tensor_proto).item())
    graphs = [g.pre_optimization_graph for g in meta.function_graphs]
    ops = {node.op for g in graphs for node in g.node} | {
        node.op for g in graphs for f in g.library.function for node in f.node_def}
    assert event.step == 1 and "MatMul" in ops
    assert "ResourceApplyAdam" in ops  # trainer.fused_adam is on by default: the step runs the fused update


def test_hparams_session_with_final_metrics(run):
    session = _load(run / "tensorboard")
    tags = session.Tags()["tensors"]
    assert "_hparams_/session_start_info" in tags and "_hparams_/session_end_info" in tags
    start = plugin_data_pb2.HParamsPluginData.FromString(
        session.SummaryMetadata("_hparams_/session_start_info").plugin_data.content).session_start_info
    assert start.hparams["model"].string_value == "toy"
    assert start.hparams["learning_rate"].number_value == pytest.approx(0.01)
    assert start.hparams["trainer.batch_size"].number_value == 8
    assert start.hparams["task"].string_value == "toy"
    assert start.group_name == "toy-run"  # the trial id: the run directory's name
    end_event = session.Tensors("_hparams_/session_end_info")[0]
    end = plugin_data_pb2.HParamsPluginData.FromString(
        session.SummaryMetadata("_hparams_/session_end_info").plugin_data.content).session_end_info
    assert end.status == 1  # STATUS_SUCCESS
    assert end_event.step == 6
    history = json.loads((run / "history.json").read_text())["history"]
    final_loss = _scalar(session, "final/eval_loss")
    assert final_loss == {6: pytest.approx(history[-1]["eval"]["loss"])}
    assert {"final/best_loss", "final/steps_per_second", "final/examples_per_second", "final/steps"} <= set(tags)


def test_hparams_dashboard_lists_the_session(run):
    """The HParams plugin's own backend finds the session, its hyperparameters and the metrics."""
    from tensorboard import context as tb_context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import backend_context

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(run.parent))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(run.parent))
    context = backend_context.Context(base_plugin.TBContext(data_provider=provider, logdir=str(run.parent)))
    ctx = tb_context.RequestContext()
    content = context.hparams_metadata(ctx, "")
    experiment = context.experiment_from_metadata(ctx, "", True, content, context.hparams_from_data_provider(ctx, "", 0))
    names = {info.name for info in experiment.hparam_infos}
    metrics = {(m.name.group, m.name.tag) for m in experiment.metric_infos}
    assert {"model", "learning_rate", "task"} <= names
    assert ("", "final/eval_loss") in metrics and ("eval", "loss") in metrics


def test_profile_of_the_step_range(run):
    profiles = list((run / "tensorboard" / "train" / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert len(profiles) == 1 and profiles[0].stat().st_size > 1000


def test_profile_steps_are_validated():
    with pytest.raises(ConfigError, match="profile_steps"):
        from_dict(TrainerConfig, {"profile_steps": [5, 2]})
    with pytest.raises(ConfigError, match="profile_steps"):
        from_dict(TrainerConfig, {"profile_steps": [0]})
