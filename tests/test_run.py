"""Run: the states a training keeps, which epochs carry which splits, and its form on disk (Run.save /
Run.load)."""
import json

import numpy as np
import pytest
import torch

from lossscape import RunConfig, train, train_population
from lossscape.run import RUN_FILES, Run
from lossscape.schedules import snapshot_steps

# Two cosine cycles over 4 epochs (cycle ends at epochs 2 and 4) and states kept at epochs 1, 2 and
# 4: epoch 2's end is both a cycle snapshot and a record_snapshots epoch.
CFG = RunConfig(dataset="mnist1d", n_samples=300, model="mlp", width=8, batch_size=64, lr=0.1, momentum=0.9,
                schedule="cyclic_cosine", snapshots=2, epochs=4, record_snapshots=(1, 2, 4))


def _equal_states(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def runs():
    return [train(CFG), *train_population(CFG, [0, 1], path="stacked")]


@pytest.mark.parametrize("which", [0, 1, 2], ids=["single", "stacked member 0", "stacked member 1"])
def test_cycle_snapshots_and_kept_epochs_are_apart(runs, which):
    run = runs[which]
    steps_per_epoch = run.history[0]["steps"]
    assert run.snapshot_steps == snapshot_steps(4 * steps_per_epoch, 2) == [2 * steps_per_epoch, 4 * steps_per_epoch]
    assert len(run.snapshots) == 2 and sorted(run.epoch_snapshots) == [1, 2, 4]
    # the same weights, reached once: the cycle end at epoch 2 and the state kept at epoch 2's end
    assert _equal_states(run.snapshots[0], run.epoch_snapshots[2])
    assert _equal_states(run.snapshots[1], run.epoch_snapshots[4]) and _equal_states(run.snapshots[1], run.final_state)
    assert not _equal_states(run.epoch_snapshots[1], run.epoch_snapshots[2])


def test_a_member_keeps_only_the_epochs_it_reached():
    c = CFG.replace(schedule="constant", snapshots=0, momentum=0.0, stop="early_stop", patience=1, epochs=30,
                    record_snapshots=tuple(range(1, 31)), lr=0.5)
    for run in train_population(c, [0, 1, 2], path="stacked"):
        assert sorted(run.epoch_snapshots) == list(range(1, run.epochs_run + 1))
        assert _equal_states(run.epoch_snapshots[run.best_epoch], run.final_state)


def test_save_and_load_give_the_same_run(runs, tmp_path):
    run = runs[1]
    run.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(RUN_FILES)
    back = Run.load(tmp_path)
    assert back.config == run.config and back.history == run.history and back.stop_reason == run.stop_reason
    assert np.array_equal(back.update_norms, run.update_norms) and back.update_norms.dtype == np.float64
    assert _equal_states(back.initial_state, run.initial_state) and _equal_states(back.final_state, run.final_state)
    assert back.snapshot_steps == run.snapshot_steps and len(back.snapshots) == len(run.snapshots)
    assert all(_equal_states(a, b) for a, b in zip(back.snapshots, run.snapshots))
    assert back.epoch_snapshots.keys() == run.epoch_snapshots.keys()
    assert all(_equal_states(back.epoch_snapshots[e], s) for e, s in run.epoch_snapshots.items())
    assert (back.best_epoch, back.engine_path, back.input_shape, back.n_classes, back.device) == \
        (run.best_epoch, run.engine_path, run.input_shape, run.n_classes, run.device)
    assert back.evaluated_epochs == run.evaluated_epochs == {"train": [1, 2, 3, 4], "val": [4], "test": [4]}


def test_a_split_an_epoch_did_not_evaluate_is_a_key_error_that_says_why(runs, tmp_path):
    runs[0].save(tmp_path)
    for run in (runs[0], Run.load(tmp_path)):
        with pytest.raises(KeyError, match="val_loss: epoch 1 did not evaluate the val split.*eval_every_epoch"):
            run.metric("val_loss")
        with pytest.raises(KeyError, match="test_acc: epoch 3 did not evaluate the test split"):
            run.history[2]["test_acc"]
        with pytest.raises(KeyError, match="^'no_such_key'$"):
            run.history[0]["no_such_key"]
        assert run.history[3]["test_acc"] == runs[0].history[3]["test_acc"] and len(run.metric("train_loss")) == 4


def test_a_record_of_evaluated_epochs_that_disagrees_with_the_rows_is_refused(runs, tmp_path):
    runs[0].save(tmp_path)
    meta = json.loads((tmp_path / "run.json").read_text())
    meta["evaluated_epochs"]["test"] = [1, 4]
    (tmp_path / "run.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="evaluated_epochs: run.json records"):
        Run.load(tmp_path)
