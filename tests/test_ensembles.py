"""Snapshot ensembles (claims SE-1..3): the cyclic cosine schedule, where snapshots are taken, what
they hold, and the ensemble's softmax average, each against an independent computation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossscape import RunConfig, train, train_population
from lossscape.ensembles import (ensemble_predict, independent_ensemble_accuracy, member_accuracies,
                                 snapshot_accuracies, snapshot_ensemble_accuracy)
from lossscape.schedules import lr_at, snapshot_lr, snapshot_steps
from lossscape.data import load_data
from lossscape.data_order import epoch_permutation
from lossscape.models import init_model

# 200 examples leave 128 for training: 8 steps of 16 per epoch, T = 48 steps, M = 3 cycles of
# ceil(48 / 3) = 16 steps = 2 epochs, so snapshots land at steps 16, 32, 48.
CYCLIC = RunConfig(dataset="mnist1d", n_samples=200, model="mlp", width=8, batch_size=16, lr=0.2, epochs=6,
                   schedule="cyclic_cosine", snapshots=3, seed=1)
STEPS_PER_EPOCH, EPOCHS_PER_CYCLE = 8, 2


def huang_lr(t, T, M, lr0):
    """Huang et al. eq. (2), t = 1..T, written out with numpy."""
    cycle = np.ceil(T / M)
    return lr0 / 2 * (np.cos(np.pi * np.mod(t - 1, cycle) / cycle) + 1)


@pytest.fixture(scope="module")
def run():
    return train(CYCLIC)


@pytest.fixture(scope="module")
def test_split():
    ds = load_data(CYCLIC)
    return ds.X_test, ds.y_test


@pytest.mark.parametrize("T,M", [(300, 6), (50, 3), (10, 4), (7, 1)])
def test_snapshot_lr_is_huang_formula(T, M):
    t = np.arange(1, T + 1)
    expected = huang_lr(t, T, M, 0.1)
    assert [snapshot_lr(int(i), T, M, 0.1) for i in t] == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # the engine's 0-based step s is the formula's t = s + 1
    cfg = RunConfig(schedule="cyclic_cosine", snapshots=M, lr=0.1)
    assert [lr_at(cfg, int(i) - 1, T, 0.0) for i in t] == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("T,M,ends", [(300, 6, [50, 100, 150, 200, 250, 300]), (50, 3, [17, 34, 50]),
                                      (10, 4, [3, 6, 9, 10]), (7, 1, [7])])
def test_snapshot_steps_are_cycle_ends(T, M, ends):
    assert snapshot_steps(T, M) == ends
    lr = huang_lr(np.arange(1, T + 1), T, M, 1.0)
    # a cycle ends where the next step restarts at the full rate
    assert [t for t in range(1, T) if lr[t] == 1.0] == ends[:-1]


def test_run_saves_one_snapshot_per_cycle(run):
    T = CYCLIC.epochs * STEPS_PER_EPOCH
    assert run.snapshot_steps == [16, 32, 48] == snapshot_steps(T, CYCLIC.snapshots)
    assert len(run.snapshots) == CYCLIC.snapshots
    for k, v in run.final_state.items():
        assert torch.equal(run.snapshots[-1][k], v)


@pytest.mark.parametrize("k", [1, 2])
def test_snapshot_holds_the_weights_at_its_step(run, k):
    """A run cut after k cycles has the same cycle length ceil(T/M), hence the same LRs, init and
    data order up to there: its final weights are the full run's k-th snapshot."""
    cut = train(CYCLIC.replace(epochs=k * EPOCHS_PER_CYCLE, snapshots=k))
    for name, v in cut.final_state.items():
        assert torch.equal(run.snapshots[k - 1][name], v), name


def test_population_members_keep_their_own_snapshots(run):
    """Seeds trained as one stacked model save each member's snapshots, equal to its single run's
    (float rounding of batched vs plain matmuls apart)."""
    member = train_population(CYCLIC, [0, CYCLIC.seed])[1]
    assert member.snapshot_steps == run.snapshot_steps
    for mine, single in zip(member.snapshots, run.snapshots):
        for k, v in single.items():
            torch.testing.assert_close(mine[k], v, rtol=0, atol=1e-5)


def test_first_snapshot_equals_hand_written_sgd_with_the_cyclic_rate(run):
    ds = load_data(CYCLIC)
    model = init_model(CYCLIC, CYCLIC.seed, ds.input_shape, ds.n_classes)
    T, n = CYCLIC.epochs * STEPS_PER_EPOCH, len(ds.y_train)
    lrs = huang_lr(np.arange(1, T + 1), T, CYCLIC.snapshots, CYCLIC.lr)
    step = 0
    for epoch in range(EPOCHS_PER_CYCLE):
        perm = epoch_permutation(CYCLIC.seed, epoch, n)
        for j in range(0, n, CYCLIC.batch_size):
            idx = perm[j:j + CYCLIC.batch_size]
            model.zero_grad()
            F.cross_entropy(model(ds.X_train[idx]), ds.y_train[idx]).backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= float(lrs[step]) * p.grad
            step += 1
    assert step == run.snapshot_steps[0]
    for name, v in model.state_dict().items():
        torch.testing.assert_close(run.snapshots[0][name], v, rtol=0, atol=1e-6)


def _mlp_softmax(state, X):
    """The mlp forward by hand in float64: Linear-ReLU, Linear-ReLU, Linear, then softmax."""
    w = {k: v.double().numpy() for k, v in state.items()}
    h = np.maximum(X @ w["stages.0.1.weight"].T + w["stages.0.1.bias"], 0)
    h = np.maximum(h @ w["stages.1.0.weight"].T + w["stages.1.0.bias"], 0)
    z = h @ w["stages.2.weight"].T + w["stages.2.bias"]
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("m", [None, 1, 2, 3])
def test_ensemble_is_the_mean_softmax_of_the_last_m_snapshots(run, test_split, m):
    X, y = test_split
    hand = [_mlp_softmax(s, X.double().numpy()) for s in run.snapshots]
    expected = np.mean(hand[-(m or len(hand)):], axis=0)
    probs = ensemble_predict(run, run.snapshots, X, m)
    np.testing.assert_allclose(probs.numpy(), expected, atol=1e-6)
    assert snapshot_ensemble_accuracy(run, X, y, m) == pytest.approx(np.mean(expected.argmax(1) == y.numpy()))


def test_snapshot_accuracies_are_each_snapshot_alone(run, test_split):
    X, y = test_split
    expected = [np.mean(_mlp_softmax(s, X.double().numpy()).argmax(1) == y.numpy()) for s in run.snapshots]
    assert snapshot_accuracies(run, X, y) == pytest.approx(expected)
    # the last snapshot is the final model, whose test accuracy the engine recorded
    assert snapshot_accuracies(run, X, y)[-1] == pytest.approx(run.history[-1]["test_acc"])


def test_independent_ensemble_and_its_members(test_split):
    X, y = test_split
    runs = train_population(CYCLIC.replace(schedule="constant", snapshots=0, epochs=2), [0, 1, 2])
    assert member_accuracies(runs, X, y) == pytest.approx([r.history[-1]["test_acc"] for r in runs])
    mean = np.mean([_mlp_softmax(r.final_state, X.double().numpy()) for r in runs], axis=0)
    assert independent_ensemble_accuracy(runs, X, y) == pytest.approx(np.mean(mean.argmax(1) == y.numpy()))


def test_bad_arguments_are_refused(run, test_split):
    X, _ = test_split
    for m in (0, 4):
        with pytest.raises(ValueError, match="m: got"):
            ensemble_predict(run, run.snapshots, X, m)
    with pytest.raises(ValueError, match="states: got none"):
        ensemble_predict(run, [], X)
    other = train(CYCLIC.replace(width=4, schedule="constant", snapshots=0, epochs=1))
    with pytest.raises(ValueError, match="different architectures"):
        independent_ensemble_accuracy([run, other], X, test_split[1])


def test_pairwise_disagreement_oracle():
    """Three members over four examples, predicted classes written out: pairs (a, b) differ on 1 of
    4, (a, c) on 2 of 4, (b, c) on 3 of 4; mean (0.25 + 0.5 + 0.75) / 3 = 0.5."""
    from lossscape.ensembles import pairwise_disagreement

    def onehot(classes):
        return F.one_hot(torch.tensor(classes), 3).double() * 0.8 + 0.2 / 3

    a, b, c = onehot([0, 1, 2, 0]), onehot([0, 1, 2, 1]), onehot([0, 2, 1, 1])
    assert pairwise_disagreement([a, b, c]) == pytest.approx(0.5)
    assert pairwise_disagreement([a, a]) == 0.0
    with pytest.raises(ValueError, match="probs"):
        pairwise_disagreement([a])


def test_snapshot_and_independent_disagreement_read_the_members(run, test_split):
    from lossscape.ensembles import independent_disagreement, pairwise_disagreement, snapshot_disagreement

    X, _ = test_split
    expected = pairwise_disagreement([ensemble_predict(run, [s], X) for s in run.snapshots])
    assert snapshot_disagreement(run, X) == expected
    assert independent_disagreement([run, run], X) == 0.0  # the same model twice agrees with itself
