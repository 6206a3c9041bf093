"""FreezeOut wall time (claims FO-1..3): frozen vs unfrozen training time per model, beside the
saving that counting FLOPs predicts.

    .venv/bin/python benchmarks/bench_freezeout.py [--epochs 4] [--repeats 3] [--threads 1]

Setting: MNIST-1D (3,200 training examples of length 40), each model at its default width, SGD
with Nesterov momentum 0.9 and lr 0.1 at batch 64 (Brock et al.'s optimizer). "FreezeOut" is
the freezeout schedule with t0 = 0.5, cubic spacing and scaled rates (the paper's recommended
setting); "unfrozen" is the same schedule with t0 = 1, so every layer keeps the same kind of
cosine-annealed rate and nothing freezes. Time is the training steps only (the engine's
epoch_time_s; per-epoch evaluation is left out). Both variants are warmed up for one epoch first,
repeats alternate the two variants, and the ratio is the median of the paired per-repeat ratios.

The prediction is lossscape.step_cost.freezeout_flop_ratio: each stage's forward FLOPs, a
backward of weight gradients (1x forward) plus input gradients (1x forward, above the first
trained stage only), summed over the run's actual frozen prefixes: the time ratio a purely
compute-bound step would show.
"""
from __future__ import annotations

import argparse
import math
import statistics

import torch

from lossscape import RunConfig, train
from lossscape.step_cost import freezeout_flop_ratio, stage_forward_flops
from lossscape.data import load_data
from lossscape.models import init_model

MODELS = ("mlp", "vgg_small", "resnet_small", "densenet_small")


def train_time(cfg: RunConfig):
    run = train(cfg)
    return sum(h["epoch_time_s"] for h in run.history), run.history[-1]["test_acc"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"FreezeOut vs unfrozen, MNIST-1D, {a.epochs} epochs, batch 64, median of {a.repeats} paired repeats, "
          f"{a.threads} thread(s)")
    print(f"{'model':<15}{'stages':>7}{'unfrozen s':>12}{'FreezeOut s':>13}{'time ratio':>12}"
          f"{'FLOP ratio':>12}{'acc unfrozen':>14}{'acc FreezeOut':>15}")
    for model in MODELS:
        frozen = RunConfig(model=model, batch_size=64, lr=0.1, momentum=0.9, nesterov=True, epochs=a.epochs,
                           schedule="freezeout", freeze_t0=0.5, freeze_spacing="cubic", freeze_scale_lr=True)
        unfrozen = frozen.replace(freeze_t0=1.0)
        for cfg in (frozen, unfrozen):
            train(cfg.replace(epochs=1))  # warm-up: allocator, kernels, data generation
        times, acc = {"frozen": [], "unfrozen": []}, {}
        for _ in range(a.repeats):
            for name, cfg in (("unfrozen", unfrozen), ("frozen", frozen)):
                seconds, acc[name] = train_time(cfg)  # the same seed every repeat: the same accuracy
                times[name].append(seconds)
        ds = load_data(frozen)
        net = init_model(frozen, frozen.seed, ds.input_shape, ds.n_classes)
        steps = a.epochs * math.ceil(len(ds.y_train) / frozen.batch_size)
        flop_ratio = freezeout_flop_ratio(frozen, stage_forward_flops(net, ds.input_shape), steps)
        ratio = statistics.median(f / u for f, u in zip(times["frozen"], times["unfrozen"]))
        print(f"{model:<15}{len(net.stages):>7}{statistics.median(times['unfrozen']):>12.2f}"
              f"{statistics.median(times['frozen']):>13.2f}{ratio:>12.3f}{flop_ratio:>12.3f}"
              f"{acc['unfrozen']:>14.3f}{acc['frozen']:>15.3f}")


if __name__ == "__main__":
    main()
