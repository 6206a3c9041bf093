"""Training-engine benchmarks, each a ratio measured within one run (this machine is noisy).

    .venv/bin/python benchmarks/bench_engine.py [--epochs 2] [--repeats 3] [--device cuda] [--target 3]

1. A population of 8 seeds trained on the path train_population chooses vs the same 8 seeds
   trained one after the other (mnist1d, mlp width 256, bs 64 unless given): target (--target)
   >= 1x everywhere, >= 3x where steps are overhead-bound (--width 64 --batch-size 16). With
   --device cuda the loop is also timed on the CPU: issue 11 asks a GPU for >= 10x on 8 seeds of
   the cpu profile's MLP (--width 128, as benchmarks/gpu_check.sh runs it), and a population of 8
   on one device can be at most about 8x its own loop (a stacked step costs at least one single
   step), so the 10x is read against the CPU's loop.
2. The cost of recording (per-step update norms, per-epoch distances) relative to the same
   training with the recording reduced to a constant: target < 20% overhead. Measured on the
   training steps (the runs' epoch_time_s, which leaves out the per-epoch evaluation both arms
   share) and on the whole run.
3. Written-out steps in inference mode (Engine.step_mode, the default) against the same steps
   under no_grad (the former mode), a single run and the population at the configured width and
   batch: training-step time, fastest and median repeat.
4. A population's evaluation of the training split (Engine.evaluate) in passes of
   engine.EVAL_CHUNK member-examples (the default) against passes of EVAL_CHUNK examples for
   every member at once (the former behaviour, forced by scaling EVAL_CHUNK by the members).
Each arm is warmed up once, then the arms alternate and the medians are compared; a speed-up
against its target is judged from the per-repeat ratios as a claim is (`Repeats.speedup`): "met",
"not met", or "inconclusive" where the repeats cannot tell (at least 5 are needed for "met").
"""
from __future__ import annotations

import argparse
import gc
import statistics
import time
from dataclasses import dataclass

import torch

from lossscape import RunConfig, engine as engine_module, stats, train, train_population
from lossscape.data import load_data
from lossscape.engine import Engine
from lossscape.strategies import SingleModel, StackedModels


@dataclass
class Repeats:
    """Per-arm seconds of each alternating repeat: the whole call (wall) and its runs' training
    steps (the sum of their epoch_time_s; a population's members share one clock, counted once)."""
    wall: dict[str, list[float]]
    steps: dict[str, list[float]]

    def median(self, what: str = "wall") -> dict[str, float]:
        return {name: statistics.median(t) for name, t in getattr(self, what).items()}

    def fastest(self, what: str = "steps") -> dict[str, float]:
        return {name: min(t) for name, t in getattr(self, what).items()}

    def speedup(self, slow: str, fast: str, target: float, what: str = "wall") -> str:
        """slow's time over fast's, judged against `target` as the claims are judged: the
        per-repeat ratios (the two arms of one repeat ran back to back, so each ratio is paired
        against the machine's drift) in lossscape.stats.threshold_test, an exact sign-flip test on
        log ratios with its 95% t-interval; "met" is the supported verdict, "not met" the refuted
        one, and a ratio whose interval straddles the target is "inconclusive" at these repeats."""
        ratios = [s / f for s, f in zip(getattr(self, what)[slow], getattr(self, what)[fast])]
        if len(ratios) < 2:
            return f"{ratios[0]:.2f}x (one repeat: no interval)"
        result = stats.threshold_test(ratios, target, "greater", scale="log", effect_name="speed-up")
        verdict = {"supported": "met", "refuted": "not met"}.get(str(stats.verdict(result)), "inconclusive")
        return (f"{result.effect:.2f}x [{result.ci_low:.2f}, {result.ci_high:.2f}], "
                f">= {target:g}x {verdict}")


def alternate(arms: dict, repeats: int) -> Repeats:
    """Each arm's seconds in every repeat, the arms alternating within a repeat after one warm-up call each."""
    for fn in arms.values():  # warm-up: data generation, allocator, kernels
        fn()
    timed = Repeats({name: [] for name in arms}, {name: [] for name in arms})
    for _ in range(repeats):
        for name, fn in arms.items():
            gc.collect()  # the garbage of the arm before (a loop leaves 8 runs' states) is not this arm's time
            t0 = time.perf_counter()
            runs = fn()
            timed.wall[name].append(time.perf_counter() - t0)
            timed.steps[name].append(sum(sum(h["epoch_time_s"] for h in r.history) for r in _distinct_clocks(runs)))
    return timed


def _distinct_clocks(runs):
    runs = runs if isinstance(runs, list) else [runs]
    return runs if len({r.total_time_s for r in runs}) == len(runs) else runs[:1]


class _NoGradSteps:
    """Steps under no_grad instead of Engine.step_mode's inference mode: the mode before it."""

    def __enter__(self):
        self.real = Engine.step_mode
        Engine.step_mode = lambda engine: torch.set_grad_enabled(not engine.written_out)
        return self

    def __exit__(self, *exc):
        Engine.step_mode = self.real


class _NoRecording:
    """Swap the engine's update norms for constants: the step without the recording work. Both
    ways a step takes them: per tensor (tensor_norms) and from the flat gradient (flat_norms)."""

    def __enter__(self):
        self.real = {(cls, name): getattr(cls, name) for cls in (SingleModel, StackedModels)
                     for name in ("tensor_norms", "flat_norms")}
        SingleModel.tensor_norms = staticmethod(lambda tensors: torch.zeros(len(tensors)))
        SingleModel.flat_norms = staticmethod(lambda flat, views: torch.zeros(1))
        StackedModels.tensor_norms = staticmethod(lambda tensors: torch.zeros(len(tensors), len(tensors[0])))
        StackedModels.flat_norms = staticmethod(lambda flat, views: torch.zeros(len(views), len(views[0])))
        return self

    def __exit__(self, *exc):
        for (cls, name), real in self.real.items():
            setattr(cls, name, staticmethod(real))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--target", type=float, default=1.0, help="the population's speed-up target (3 at w64 bs16)")
    a = ap.parse_args()
    cfg = RunConfig(dataset="mnist1d", model="mlp", width=a.width, batch_size=a.batch_size, lr=0.05, epochs=a.epochs,
                    device=a.device)
    load_data(cfg)
    seeds = list(range(8))
    print(f"mlp width {a.width}, bs {a.batch_size}, {a.device}; torch {torch.__version__}, {torch.get_num_threads()} threads, {a.epochs} epochs, "
          f"median of {a.repeats} alternating repeats after a warm-up")

    arms = {
        "population (8 seeds, chosen path)": lambda: train_population(cfg, seeds),
        "8 sequential single runs": lambda: [train(cfg.replace(seed=s)) for s in seeds],
    }
    if a.device == "cuda":
        cpu = cfg.replace(device="cpu")
        arms["8 sequential single runs, cpu"] = lambda: [train(cpu.replace(seed=s)) for s in seeds]
    timed = alternate(arms, a.repeats)
    print(f"\n{'arm':<34}{'median s':>10}")
    for name, t in timed.median().items():
        print(f"{name:<34}{t:>10.2f}")
    pop, loop = list(arms)[:2]
    print(f"speed-up of the population on {a.device}: {timed.speedup(loop, pop, a.target)}")
    if a.device == "cuda":
        print(f"speed-up of the population on cuda against the loop on cpu: "
              f"{timed.speedup('8 sequential single runs, cpu', pop, 10.0)} (the target for the cpu profile's MLP)")

    def bare_single():
        with _NoRecording():
            return train(cfg)

    def bare_population():
        with _NoRecording():
            return train_population(cfg, seeds)

    timed = alternate({"single, recording": lambda: train(cfg), "single, bare": bare_single,
                       "population, recording": lambda: train_population(cfg, seeds),
                       "population, bare": bare_population}, a.repeats)
    wall, steps = timed.median("wall"), timed.median("steps")
    print(f"\n{'arm':<34}{'steps s':>10}{'whole s':>10}")
    for name in wall:
        print(f"{name:<34}{steps[name]:>10.2f}{wall[name]:>10.2f}")
    for kind in ("single", "population"):
        on_steps = steps[f"{kind}, recording"] / steps[f"{kind}, bare"] - 1
        on_run = wall[f"{kind}, recording"] / wall[f"{kind}, bare"] - 1
        print(f"recording overhead, {kind}: {100 * on_steps:+.1f}% of the training steps, "
              f"{100 * on_run:+.1f}% of the whole run (target < 20%)")

    def under_no_grad(fn):
        def arm():
            with _NoGradSteps():
                return fn()
        return arm

    single, population = (lambda: train(cfg)), (lambda: train_population(cfg, seeds))
    timed = alternate({"single, inference mode": single, "single, no_grad": under_no_grad(single),
                       "population, inference mode": population,
                       "population, no_grad": under_no_grad(population)}, a.repeats)
    steps, fastest = timed.median("steps"), timed.fastest("steps")
    print(f"\n{'arm':<34}{'steps s, fastest':>18}{'median':>10}")
    for name in steps:
        print(f"{name:<34}{fastest[name]:>18.3f}{steps[name]:>10.3f}")
    for kind in ("single", "population"):
        print(f"inference mode, {kind}: {fastest[f'{kind}, no_grad'] / fastest[f'{kind}, inference mode']:.2f}x "
              f"faster training steps than no_grad (median {steps[f'{kind}, no_grad'] / steps[f'{kind}, inference mode']:.2f}x)")

    evaluation_passes(cfg, seeds, a.repeats)


def evaluation_passes(cfg: RunConfig, seeds: list[int], repeats: int, blocks: int = 5) -> None:
    """Section 4: one stacked engine evaluates its training split, the arms alternating; each
    repeat times `blocks` consecutive evaluations."""
    engine = Engine(cfg, seeds, stacked=True)
    X, y = engine.splits["train"]
    chunk = engine_module.EVAL_CHUNK
    arms = {f"passes of {chunk} member-examples": chunk,
            f"passes of {chunk} examples x {len(seeds)} members": chunk * len(seeds)}
    times = {name: [] for name in arms}
    for r in range(repeats + 1):  # the first round warms up
        for name, size in arms.items():
            engine_module.EVAL_CHUNK = size
            t0 = time.perf_counter()
            for _ in range(blocks):
                engine.evaluate(X, y)
            if r:
                times[name].append((time.perf_counter() - t0) / blocks)
    engine_module.EVAL_CHUNK = chunk
    print(f"\n{'evaluation of ' + str(len(y)) + ' training examples':<44}{'ms, fastest':>12}{'median':>10}")
    for name, t in times.items():
        print(f"{name:<44}{1e3 * min(t):>12.2f}{1e3 * statistics.median(t):>10.2f}")
    (new, t_new), (old, t_old) = times.items()
    print(f"member-example passes: {min(t_old) / min(t_new):.2f}x faster evaluation than one pass per chunk of examples "
          f"(median {statistics.median(t_old) / statistics.median(t_new):.2f}x)")


if __name__ == "__main__":
    main()
