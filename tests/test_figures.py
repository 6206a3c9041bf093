"""Every figure writes a valid, non-empty PNG, and the same inputs give the same bytes."""

import numpy as np
import pytest
from PIL import Image

from lossscape.report import figures as F


def _inputs():
    rng = np.random.default_rng(0)
    bs = [16, 128, 1024]
    xs = ys = np.linspace(-1, 1, 11)
    bowl = 0.1 + xs[None, :] ** 2 + ys[:, None] ** 2
    return {
        "training_curves": dict(curves={b: np.exp(-np.arange(8) / (2 + k)) + rng.uniform(0, 0.05, (3, 8))
                                        for k, b in enumerate(bs)}),
        "update_norm_histograms": dict(norms={b: rng.lognormal(-6 - k, 0.4, 300) for k, b in enumerate(bs)}),
        "layer_distances": dict(distances={b: {"fc1.weight": 3.0 / (k + 1), "fc2.weight": 1.0 / (k + 1)}
                                           for k, b in enumerate(bs)}),
        "interpolation_curves": dict(alphas=np.linspace(-1, 2, 13),
                                     train_loss=0.1 + np.linspace(-1, 2, 13) ** 2 + rng.uniform(0, 0.01, (3, 13)),
                                     val_loss=0.2 + np.linspace(-1, 2, 13) ** 2),
        "surface_contours": dict(xs=xs, ys=ys, surfaces={"bs 16": bowl, "bs 1024": 4 * bowl}),
        "metric_vs_batch": dict(values={b: rng.lognormal(k, 0.2, 5) for k, b in enumerate(bs)},
                                ci={b: (np.exp(k) * 0.8, np.exp(k) * 1.2) for k, b in enumerate(bs)},
                                ylabel="Keskar sharpness (%)"),
        "lr_batch_heatmap": dict(lrs=[0.01, 0.02, 0.04], batch_sizes=bs, values=rng.uniform(0.3, 0.5, (3, 3))),
        "ratio_over_epochs": dict(epochs=np.arange(1, 9), ratio=1 + 0.3 * np.arange(1, 9) + rng.uniform(0, 0.1, (3, 8)),
                                  slope=0.3, intercept=1.0),
        "gradient_se_loglog": dict(batch_sizes=[1, 4, 16, 64], se=[1.0, 0.5, 0.26, 0.12], slope=-0.51, intercept=0.0),
        "lr_schedule": dict(steps=np.arange(300), lr=0.05 * (np.cos(np.pi * (np.arange(300) % 50) / 50) + 1),
                            snapshots=[49, 99, 149, 199, 249, 299]),
        "freeze_times": dict(layers=["conv1", "block1", "block2", "fc"], t_freeze=[0.5, 0.67, 0.83, 1.0]),
        "accuracy_vs_speedup": dict(speedup=[1.0, 1.15, 1.2], accuracy=[0.92, 0.91, 0.89],
                                    labels=["baseline", "t0=0.8", "t0=0.5"]),
        "forest_plot": dict(rows=[
            {"label": "BS-1", "verdict": "supported", "x": 1.5, "low": 1.2, "high": 1.9, "region": (1.0, np.inf), "log": True},
            {"label": "BS-3", "verdict": "refuted", "x": 1.4, "low": 1.1, "high": 1.7, "region": (0.0, 1.0), "log": True},
            {"label": "SE-2", "verdict": "inconclusive", "x": 0.01, "low": -0.02, "high": 0.04,
             "region": (0.0, np.inf), "log": False},
            {"label": "X-3", "verdict": "supported", "x": 0.001, "low": -0.002, "high": 0.003,
             "region": (-0.005, 0.005), "log": False}]),
        "steps_vs_batch": dict(steps={b: (10 + 2000 / b) * rng.uniform(0.9, 1.1, 3) for b in bs},
                               fit=(10.0, 2000.0), marks={"B_crit": 200.0, "B_simple": 300.0}),
    }


CASES = sorted(_inputs())


def test_every_figure_function_is_covered():
    public = {name for name in dir(F) if not name.startswith("_") and callable(getattr(F, name))
              and getattr(F, name).__module__ == F.__name__}
    assert public == set(CASES)


@pytest.mark.parametrize("name", CASES)
def test_figure_is_a_valid_png_and_reproducible(name, tmp_path):
    kwargs = _inputs()[name]
    first = getattr(F, name)(tmp_path / "a" / f"{name}.png", **kwargs)
    again = getattr(F, name)(tmp_path / "b" / f"{name}.png", **_inputs()[name])
    assert first == tmp_path / "a" / f"{name}.png"
    with Image.open(first) as im:
        im.verify()
    with Image.open(first) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
        assert len(set(np.asarray(im.convert("L")).ravel().tolist())) > 2  # something was drawn
    assert first.read_bytes() == again.read_bytes()


def test_different_inputs_give_different_bytes(tmp_path):
    kwargs = _inputs()["metric_vs_batch"]
    a = F.metric_vs_batch(tmp_path / "a.png", **kwargs)
    kwargs["values"] = {b: 2 * np.asarray(v) for b, v in kwargs["values"].items()}
    b = F.metric_vs_batch(tmp_path / "b.png", **kwargs)
    assert a.read_bytes() != b.read_bytes()
