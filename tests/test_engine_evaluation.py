"""Evaluation only where something reads it: each epoch evaluates the splits its stop rules read
(and eval_every_epoch), the last epoch and early stopping's best carry every split, and training
is the same as when every epoch evaluated every split."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossscape import RunConfig, engine as engine_module, train, train_population
from lossscape.data import load_data
from lossscape.engine import Engine, Member
from lossscape.strategies import SingleModel, StackedModels

# 500 MNIST-1D examples: 320 train / 80 val / 100 test; each split fits one evaluation chunk, so an
# evaluation forward pass names its split by its size.
SMALL = dict(dataset="mnist1d", n_samples=500, model="mlp", width=32, batch_size=32, lr=0.1)
SPLIT_OF_SIZE = {320: "train", 80: "val", 100: "test"}
EVERY = ("train", "val", "test")


def cfg(**kw):
    return RunConfig(**{**SMALL, "epochs": 4, **kw})


@pytest.fixture
def passes(monkeypatch):
    """The split of every evaluation forward pass, in order (either strategy)."""
    seen = []
    for cls in (SingleModel, StackedModels):
        real = cls.eval_forward

        def counted(self, x, y, real=real):
            seen.append(SPLIT_OF_SIZE[len(x)])
            return real(self, x, y)
        monkeypatch.setattr(cls, "eval_forward", counted)
    return seen


def _trained(c, path, seeds=(0,)):
    if path == "single":
        return [train(c.replace(seed=s)) for s in seeds]
    return train_population(c, list(seeds), path=path)


PATHS = ["single", "stacked"]
STOP_RULES = {
    "epochs": dict(),
    "target_loss": dict(stop="target_loss", target_loss=1.9, epochs=40, lr=0.05),
    "early_stop": dict(stop="early_stop", patience=2, epochs=60, lr=0.5, batch_size=16),
}


def _expected_passes(c, runs):
    """The evaluation passes the rule gives, written out: the epoch's splits after every epoch the
    population trained, then the rest once for every last row (one pass: a stopped member keeps its
    weights), and once more for the best rows that are not last rows (early stopping)."""
    every = [k for k in EVERY if k in c.epoch_splits]
    rest = [k for k in EVERY if k not in every]
    expected = every * max(r.epochs_run for r in runs) + rest
    if any(r.best_epoch is not None and r.best_epoch != r.epochs_run for r in runs):
        expected += rest
    return expected


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("rule", STOP_RULES)
def test_each_epoch_evaluates_only_the_splits_its_rules_read(passes, rule, path):
    c = cfg(**STOP_RULES[rule])
    runs = _trained(c, path, seeds=(0, 1) if path == "stacked" else (0,))
    assert c.epoch_splits == (("train", "val") if rule == "early_stop" else ("train",))
    assert passes == _expected_passes(c, runs)
    for run in runs:
        evaluated = {k: list(range(1, run.epochs_run + 1)) for k in c.epoch_splits}
        for k in EVERY:
            if k not in c.epoch_splits:
                evaluated[k] = sorted({run.epochs_run, run.best_epoch or run.epochs_run})
        assert run.evaluated_epochs == evaluated


@pytest.mark.parametrize("path", PATHS)
def test_declared_splits_are_evaluated_every_epoch(passes, path):
    c = cfg(eval_every_epoch=("test",))
    runs = _trained(c, path)
    assert passes == ["train", "test"] * 4 + ["val"]
    assert runs[0].evaluated_epochs == {"train": [1, 2, 3, 4], "test": [1, 2, 3, 4], "val": [4]}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("rule", STOP_RULES)
def test_training_and_every_recorded_value_equal_evaluating_every_split_every_epoch(rule, path):
    """The old behaviour, forced through the config, is the reference: the same weights exactly
    (evaluation takes no RNG and no step), and every value a row holds equal to that run's."""
    c = cfg(**STOP_RULES[rule])
    seeds = (0, 1, 2) if path == "stacked" else (0,)
    new, old = _trained(c, path, seeds), _trained(c.replace(eval_every_epoch=EVERY), path, seeds)
    for a, b in zip(new, old):
        assert (a.stop_reason, a.epochs_run, a.best_epoch) == (b.stop_reason, b.epochs_run, b.best_epoch)
        assert all(torch.equal(a.final_state[k], b.final_state[k]) for k in a.final_state)
        assert (a.update_norms == b.update_norms).all()
        for ra, rb in zip(a.history, b.history):
            assert set(ra) <= set(rb)
            assert {k: v for k, v in ra.items() if not k.endswith("time_s")} == \
                {k: rb[k] for k in ra if not k.endswith("time_s")}
        for epoch in {a.epochs_run, a.best_epoch or a.epochs_run}:  # every split there
            assert set(a.history[epoch - 1]) == set(b.history[epoch - 1])


def _reference(run, state, split):
    """Loss and accuracy of weights `state` on a split of run's data, with a plain module and
    F.cross_entropy."""
    ds = load_data(run.config)
    X, y = {"train": (ds.X_train, ds.y_train), "val": (ds.X_val, ds.y_val), "test": (ds.X_test, ds.y_test)}[split]
    with torch.no_grad():
        logits = run.model(state)(X)
    return F.cross_entropy(logits, y).item(), (logits.argmax(-1) == y).double().mean().item()


@pytest.mark.parametrize("path", PATHS)
def test_best_epoch_row_holds_the_metrics_of_the_best_weights(path):
    c = cfg(**STOP_RULES["early_stop"])
    for run in _trained(c, path, seeds=(0, 1) if path == "stacked" else (0,)):
        assert run.stop_reason == "early_stop" and run.best_epoch < run.epochs_run
        best = run.history[run.best_epoch - 1]
        for split in EVERY:  # final_state holds the best epoch's weights under early stopping
            loss, acc = _reference(run, run.final_state, split)
            assert best[f"{split}_loss"] == pytest.approx(loss, rel=1e-5)
            assert best[f"{split}_acc"] == pytest.approx(acc, abs=1e-12)


@pytest.mark.parametrize("path", PATHS)
def test_last_epoch_row_holds_the_metrics_of_the_last_weights(path):
    c = cfg(**STOP_RULES["target_loss"])
    seeds = (0, 1, 2)
    runs = _trained(c, path, seeds)
    assert len({r.epochs_run for r in runs}) > 1  # members stopped at different epochs
    for run in runs:  # final_state: the weights at the member's last epoch
        for split in EVERY:
            loss, acc = _reference(run, run.final_state, split)
            assert run.history[-1][f"{split}_loss"] == pytest.approx(loss, rel=1e-5)
            assert run.history[-1][f"{split}_acc"] == pytest.approx(acc, abs=1e-12)


@pytest.mark.parametrize("stacked", [False, True])
def test_the_engine_keeps_its_last_weights_after_evaluating_the_best(stacked):
    """The best weights are loaded for one pass and put back: the engine ends holding each
    member's weights of its last epoch (kept by record_snapshots at every epoch's end)."""
    c = cfg(**STOP_RULES["early_stop"], record_snapshots=tuple(range(1, 61)))
    engine = Engine(c, [0, 1] if stacked else [0], stacked=stacked)
    for m, run in enumerate(engine.run()):
        assert run.best_epoch < run.epochs_run
        last = run.epoch_snapshots[run.epochs_run]
        assert all(torch.equal(engine.strategy.state(m)[k], last[k]) for k in last)
        assert not all(torch.equal(run.final_state[k], last[k]) for k in last)  # the best weights differ


def test_the_last_row_meets_the_divergence_rule_on_what_was_added():
    """A loss added after training is read by the divergence rule on the last row, as the rule
    would have read it at that epoch; an earlier (best) row is history, its member's stop stays."""
    row = lambda e: {"epoch": e, "eval_time_s": 0.1, "epoch_distance": 1.0, "train_loss": 1.0, "train_acc": 0.5}
    member = Member(seed=0, initial={}, history=[row(1), row(2)], stop_reason="early_stop")
    member.add_evaluations(1, {"test_loss": math.nan, "test_acc": 0.1}, 0.5, n_classes=10)
    assert member.stop_reason == "early_stop" and member.history[0]["eval_time_s"] == pytest.approx(0.6)
    member.add_evaluations(2, {"test_loss": 1.2, "test_acc": 0.4}, 0.5, n_classes=10)
    assert member.stop_reason == "early_stop" and member.history[1]["test_loss"] == 1.2
    member.add_evaluations(2, {"val_loss": math.inf, "val_acc": 0.1}, 0.5, n_classes=10)
    assert member.stop_reason == "diverged"


def test_a_stacked_evaluation_pass_holds_eval_chunk_member_examples(monkeypatch):
    """EVAL_CHUNK counts member-examples: at a chunk of 100, 4 stacked members evaluate the 320
    training examples 25 at a time, and get what one pass of all 320 gives, to float rounding."""
    engine = Engine(cfg(), [0, 1, 2, 3], stacked=True)
    X, y = engine.splits["train"]
    whole = engine.evaluate(X, y)  # 4 x 320 member-examples: one pass
    sizes, real = [], StackedModels.eval_forward

    def counted(self, x, yb):
        sizes.append(len(x))
        return real(self, x, yb)
    monkeypatch.setattr(StackedModels, "eval_forward", counted)
    monkeypatch.setattr(engine_module, "EVAL_CHUNK", 100)
    parts = engine.evaluate(X, y)
    assert sizes == [25] * 12 + [20]
    np.testing.assert_allclose(parts[0], whole[0], rtol=1e-6)
    np.testing.assert_allclose(parts[1], whole[1], atol=1 / 320)
