"""The engine path of a population: probed once per step shape and machine, recorded in the cache
folder, reused (so a rerun trains the same weights), forced by editing the record; and the thread
count the probe chooses, which training runs on and then gives back."""
import json
import os

import pytest
import torch

from lossscape import RunConfig, RunStore, path_choice, train_population
from lossscape.cache import ENGINE_PATHS
from lossscape.engine import Engine

CFG = RunConfig(dataset="mnist1d", n_samples=500, model="mlp", width=32, batch_size=32, lr=0.1, epochs=2)
SEEDS = [0, 1, 2]


def _probe_measures(monkeypatch, per_step):
    """The probe sees per_step(threads, members) as the seconds per step, in a fresh process."""
    monkeypatch.setattr(path_choice, "CHOSEN_PATHS", {})
    monkeypatch.setattr(Engine, "seconds_per_step", lambda self, steps: per_step(torch.get_num_threads(), len(self.seeds)))


def _same_weights(a, b):
    return all(torch.equal(x.final_state[k], y.final_state[k]) for x, y in zip(a, b) for k in x.final_state)


def STACKED_FASTEST(threads, k):  # chunks of 2, on any thread count
    return {1: 1.0, 2: 1.2, 3: 2.4}[k]


def LOOP_FASTEST(threads, k):
    return {1: 1.0, 2: 2.4, 3: 3.6}[k]


def test_a_rerun_reuses_the_recorded_path_and_trains_the_same_weights(tmp_path, monkeypatch):
    _probe_measures(monkeypatch, STACKED_FASTEST)
    first = RunStore(tmp_path / "a").get_or_train_population(CFG, SEEDS)
    assert [r.engine_path["members_per_chunk"] for r in first] == [2, 2, 2]
    recorded = json.loads((tmp_path / "a" / ENGINE_PATHS).read_text())
    (key, path), = recorded.items()
    assert key == path_choice.path_key(CFG, len(SEEDS)) and path == first[0].engine_path

    # a new process whose probe would now choose the loop: a cache without the record probes again,
    _probe_measures(monkeypatch, LOOP_FASTEST)
    assert [r.engine_path["kind"] for r in RunStore(tmp_path / "b").get_or_train_population(CFG, SEEDS)] == ["loop"] * 3
    # one with the record but none of the runs retrains them on the recorded path, bit for bit
    _probe_measures(monkeypatch, LOOP_FASTEST)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / ENGINE_PATHS).write_text((tmp_path / "a" / ENGINE_PATHS).read_text())
    rerun = RunStore(tmp_path / "c").get_or_train_population(CFG, SEEDS)
    assert [r.engine_path for r in rerun] == [r.engine_path for r in first]
    assert _same_weights(rerun, first)


def test_an_edited_record_forces_the_path_and_a_wrong_one_is_named(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    _probe_measures(monkeypatch, STACKED_FASTEST)  # the probe would stack
    key = path_choice.path_key(CFG, len(SEEDS))
    (tmp_path / ENGINE_PATHS).write_text(json.dumps({key: {"kind": "loop", "members_per_chunk": 1, "threads": 1}}))
    runs = store.get_or_train_population(CFG, SEEDS)
    assert [r.engine_path["kind"] for r in runs] == ["loop"] * 3
    (tmp_path / ENGINE_PATHS).write_text(json.dumps({key: {"kind": "stacked", "members_per_chunk": 4, "threads": 1}}))
    with pytest.raises(ValueError, match=r"members_per_chunk: got 4; allowed: 2\.\.3 for kind 'stacked'$"):
        store.get_or_train_population(CFG.replace(lr=0.2), SEEDS)
    (tmp_path / ENGINE_PATHS).write_text(json.dumps({key: {"kind": "fast", "members_per_chunk": 1, "threads": 1}}))
    with pytest.raises(ValueError, match=r"kind: got 'fast'; allowed: 'loop', 'stacked'$"):
        store.get_or_train_population(CFG.replace(lr=0.2), SEEDS)


def test_an_unreadable_record_is_left_alone(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    _probe_measures(monkeypatch, STACKED_FASTEST)
    (tmp_path / ENGINE_PATHS).write_text("{not json")
    with pytest.warns(UserWarning, match="cannot be read"):
        runs = store.get_or_train_population(CFG, SEEDS)
    assert runs[0].engine_path["members_per_chunk"] == 2
    assert (tmp_path / ENGINE_PATHS).read_text() == "{not json"


def test_records_of_other_shapes_are_kept_and_no_temporary_file_is_left(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    _probe_measures(monkeypatch, STACKED_FASTEST)
    store.get_or_train_population(CFG, SEEDS)
    store.get_or_train_population(CFG.replace(batch_size=64), SEEDS)
    recorded = json.loads((tmp_path / ENGINE_PATHS).read_text())
    assert sorted(recorded) == sorted(path_choice.path_key(c, 3) for c in (CFG, CFG.replace(batch_size=64)))
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


@pytest.mark.parametrize("per_step, threads, kind", [
    ({(1, 1): 1.0, (1, 2): 2.4, (1, 3): 3.6, (2, 1): 0.5, (2, 2): 1.2, (2, 3): 1.8}, 2, "loop"),
    ({(1, 1): 1.0, (1, 2): 2.4, (1, 3): 3.6, (2, 1): 0.95, (2, 2): 2.4, (2, 3): 3.6}, 1, "loop"),  # within THREAD_MARGIN
    ({(1, 1): 1.0, (1, 2): 1.0, (1, 3): 1.2, (2, 1): 0.9, (2, 2): 1.8, (2, 3): 1.5}, 1, "stacked"),
])
def test_training_runs_on_the_threads_the_probe_chooses_and_gives_the_callers_back(monkeypatch, per_step,
                                                                                   threads, kind):
    caller = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _probe_measures(monkeypatch, lambda t, k: per_step[(t, k)])
        seen = set()
        runs = train_population(CFG, SEEDS, progress=lambda seed, row: seen.add(torch.get_num_threads()))
        assert seen == {threads}
        assert torch.get_num_threads() == 2
        assert [(r.engine_path["kind"], r.engine_path["threads"]) for r in runs] == [(kind, threads)] * 3
        assert runs[0].engine_path["probe_s_per_member_step"]["2"]["3"] == per_step[(2, 3)] / 3
    finally:
        torch.set_num_threads(caller)


def test_the_probe_gives_the_callers_threads_back_when_a_step_fails(monkeypatch):
    caller = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(path_choice, "CHOSEN_PATHS", {})

        def fail(self, steps):
            raise RuntimeError("step failed")
        monkeypatch.setattr(Engine, "seconds_per_step", fail)
        with pytest.raises(RuntimeError, match="step failed"):
            train_population(CFG, SEEDS)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(caller)


def test_thread_candidates():
    caller = torch.get_num_threads()
    try:
        for n, expected in [(1, [1]), (2, [1, 2]), (3, [1, 3]), (8, [1, 4, 8])]:
            torch.set_num_threads(n)
            assert path_choice.thread_counts() == expected
    finally:
        torch.set_num_threads(caller)


@pytest.mark.parametrize("batch_size, stacked", [(32, False), (32, True), (320, False)])  # 320: one step per epoch
def test_probe_times_a_block_of_steps_after_its_warmup(monkeypatch, batch_size, stacked):
    """seconds_per_step takes PROBE_WARMUP_STEPS untimed steps, then times `steps` more, on the
    batches an epoch takes (a short epoch repeats), and gives their mean."""
    from lossscape import engine as engine_module
    engine = Engine(CFG.replace(batch_size=batch_size), SEEDS if stacked else [0], stacked=stacked)
    sizes, clock = [], iter(range(100))
    real_step = Engine.step
    monkeypatch.setattr(Engine, "step", lambda self, xb, yb, size, lrs, active: (sizes.append(size), real_step(self, xb, yb, size, lrs, active)))
    monkeypatch.setattr(Engine, "_clock", lambda self: float(next(clock)))
    assert engine.seconds_per_step(5) == 1 / 5  # the clock ticks once before the block and once after
    assert len(sizes) == engine_module.PROBE_WARMUP_STEPS + 5
    assert set(sizes) == {batch_size}
