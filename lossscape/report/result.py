"""One claim's result as the report stores it, and the run-level Holm step that finalizes verdicts.

A `ClaimResult` is plain data: it travels as JSON on the pytest report (so it survives xdist),
lands in claims.json, and is everything the renderers need. It keeps the fields of the evidence
(`stats.TestResult`) that the verdict rule reads, so the final verdict can be recomputed from the
JSON alone once the Holm-adjusted p-value is known.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from lossscape.stats import DECREASING, EQUIVALENT, INCREASING, TestResult, Verdict, decide, holm, lean

SCHEMA = 2  # 2: p_opposite (refuted needs its own test), min_p, mde, lean, verified checks
# Rows without statistical evidence: the test raised, was interrupted (Ctrl-C) before it ended, was
# skipped, or never ran in this session.
ERROR, INTERRUPTED, SKIPPED, NOT_RUN = "error", "interrupted", "skipped", "not run"


def fmt(x, digits=3) -> str:
    """Numbers as the report prints them."""
    return "n/a" if x is None else f"{x:.{digits}g}"


@dataclass
class ClaimResult:
    id: str
    verdict: str                           # final verdict (after Holm), or ERROR / INTERRUPTED / SKIPPED
    measured_text: str = ""                # one line: "sharpness ratio 3.2 [2.1, 4.8]"
    params: str = ""                       # the test's parametrization id, e.g. "mnist1d-mlp"
    statistic: dict | None = None          # {"name": "kendall_tau_b", "value": 0.61}
    effect_name: str = ""
    effect: float | None = None
    ci: list | None = None                 # [low, high]
    ci_level: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None        # Holm over this run's p-values, set at session end
    p_opposite: float | None = None        # one-sided p of the opposite claim: what "refuted" needs
    p_opposite_adjusted: float | None = None  # Holm over this run's opposite p-values
    min_p: float | None = None             # smallest p the design could give
    mde: float | None = None               # minimum detectable effect at n and the test's alpha (power 0.8)
    alpha: float = 0.05
    null_effect: float | None = None       # with direction and margin: the claimed region
    direction: str | None = None
    margin: float | None = None
    test_verdict: str | None = None        # the verdict the test itself reached (alpha / m)
    test_alpha: float | None = None
    verdict_note: str = ""                 # set when the Holm verdict differs from test_verdict
    n_seeds: int | None = None
    seeds: list = field(default_factory=list)
    configs: list = field(default_factory=list)   # dicts or labels of the compared configurations
    method: str = ""
    preregistration: str = ""              # the claim test's docstring: parameters, stop rule, caveats
    reported: str = ""                     # the source's figures, from the catalog
    figures: list = field(default_factory=list)   # paths relative to the report dir
    tables: list = field(default_factory=list)    # {"title": str, "columns": [...], "rows": [[...]]}
    caveats: list = field(default_factory=list)
    details: dict = field(default_factory=dict)
    wall_time_s: float | None = None
    test_nodeid: str = ""
    outcome: str = ""                      # pytest outcome of the test's call phase, or INTERRUPTED

    @classmethod
    def from_test(cls, id: str, test: TestResult, *, label: str = "", **extra) -> "ClaimResult":
        """A result carrying `test`'s evidence; `label` names the measured quantity in measured_text."""
        measured = f"{label} {test.effect_name} {fmt(test.effect)} [{fmt(test.ci_low)}, {fmt(test.ci_high)}]".strip()
        base = dict(
            id=id, verdict=Verdict.INCONCLUSIVE.value, measured_text=measured,
            statistic={"name": test.statistic_name, "value": test.statistic},
            effect_name=test.effect_name, effect=test.effect, ci=[test.ci_low, test.ci_high],
            ci_level=test.ci_level, p_value=test.p_value, alpha=test.alpha, null_effect=test.null_effect,
            direction=test.direction, margin=test.margin, n_seeds=min(test.n), method=test.method,
            p_opposite=test.p_opposite, min_p=test.min_p,
            details={"n": list(test.n), "se": test.se, "df": test.df, "scale": test.scale, **test.details},
        )
        # a caller's details add to the test's own (min_p among them), never replace them
        extra_details = extra.pop("details", {})
        return cls(**{**base, **extra, "details": {**base["details"], **extra_details}})

    @property
    def has_evidence(self) -> bool:
        """True when the verdict follows from a p-value and a CI (not a stub, not a direct check)."""
        return self.p_value is not None and self.direction is not None

    @property
    def is_check(self) -> bool:
        """A `verified` check of an identity or of our own code: shown apart, outside Holm."""
        return self.verdict in (Verdict.VERIFIED.value, Verdict.FAILED.value)

    def judge(self, *, alpha: float | None = None, p: float | None = None, p_opposite: float | None = None) -> Verdict:
        return decide(effect=self.effect, ci_low=self.ci[0] if self.ci else None,
                      ci_high=self.ci[1] if self.ci else None, p_value=self.p_value if p is None else p,
                      p_opposite=self.p_opposite if p_opposite is None else p_opposite,
                      alpha=self.alpha if alpha is None else alpha, null_effect=self.null_effect,
                      direction=self.direction, margin=self.margin)

    def lean(self) -> str:
        """For an inconclusive result with evidence: the side its effect estimate falls on."""
        if self.verdict != Verdict.INCONCLUSIVE.value or not self.has_evidence:
            return ""
        return lean(self.effect, self.null_effect, self.direction, self.margin)

    def label(self) -> str:
        return f"{self.id}[{self.params}]" if self.params else self.id

    def claimed(self) -> str:
        """The claimed region in words: "ratio > 1", "|difference - 0| < 0.01"."""
        if self.direction in INCREASING:
            return f"{self.effect_name} > {fmt(self.null_effect)}"
        if self.direction in DECREASING:
            return f"{self.effect_name} < {fmt(self.null_effect)}"
        if self.direction == EQUIVALENT:
            return f"|{self.effect_name} - {fmt(self.null_effect)}| < {fmt(self.margin)}"
        return ""

    def verdict_text(self) -> str:
        """The verdict with the side an inconclusive result leans to: "inconclusive (leans refuted)"."""
        side = self.lean()
        return f"{self.verdict} (leans {side})" if side else self.verdict

    def power_text(self) -> str:
        """What this n could have detected: the minimum detectable effect at the test's alpha."""
        if not self.has_evidence:
            return ""
        # the MDE is infinite exactly when the design's p floor is not below alpha; claims.json has no
        # infinity, so read back it is null, and the floor says why
        floor = self.min_p is not None and self.test_alpha is not None and self.min_p >= self.test_alpha
        if self.mde is None and not floor:
            return ""
        if self.mde is None or not math.isfinite(self.mde):
            return (f"no {self.effect_name} could reach p < {fmt(self.test_alpha, 2)} with these seeds "
                    f"(smallest attainable p = {fmt(self.min_p, 2)})")
        what = (f"equivalence within +-{fmt(self.mde)}" if self.direction == EQUIVALENT
                else f"{self.effect_name} {'>' if self.direction in INCREASING else '<'} {fmt(self.mde)}")
        return f"this n detects {what} with 80% power at alpha {fmt(self.test_alpha, 2)} (normal approximation)"

    def failure_message(self) -> str:
        text = f"{self.label()}: {self.test_verdict} -- {self.measured_text}"
        if self.has_evidence:
            text += f"; claimed {self.claimed()}; p = {fmt(self.p_value)}, needs < alpha/m = {fmt(self.test_alpha)}"
            if self.test_verdict == Verdict.INCONCLUSIVE.value and self.power_text():
                text += f"; {self.power_text()}"
        return text

    def to_dict(self) -> dict:
        return _plain(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict) -> "ClaimResult":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _num(x) -> float:
    return math.nan if x is None else float(x)


def _plain(x):
    """JSON-ready copy: numpy scalars/arrays to Python, NaN/inf to None (strict JSON has neither)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def apply_holm(results: list[ClaimResult]) -> list[ClaimResult]:
    """Holm-adjust the p-values of the results that have them; return results with final verdicts.

    The test-time rule used alpha/m (Holm's strictest step), so Holm can only confirm a supported
    verdict or upgrade one the test rejected; an upgrade is written into `verdict_note`. "refuted"
    is judged the same way: its opposite one-sided p-values form their own Holm family, so false
    refutations are bounded by alpha over the run as false support is.
    """
    tested = [i for i, r in enumerate(results) if r.has_evidence]
    adjusted = holm([results[i].p_value for i in tested])
    opposite = holm([_num(results[i].p_opposite) for i in tested])
    out = list(results)
    for i, q, q_opp in zip(tested, adjusted, opposite):
        q_opp = None if math.isnan(q_opp) else float(q_opp)
        r = replace(results[i], p_adjusted=float(q), p_opposite_adjusted=q_opp)
        r.verdict = r.judge(p=float(q), p_opposite=q_opp).value
        if r.test_verdict and r.verdict != r.test_verdict:
            r.verdict_note = (f"Holm over this run's {len(tested)} p-values gives {r.verdict}; the test itself "
                              f"used the stricter p < alpha/m = {fmt(r.test_alpha)} and reported {r.test_verdict}.")
        out[i] = r
    return out


def build_doc(results: list[ClaimResult], catalog_dict: dict, environment: dict) -> dict:
    """The claims.json document: finalized results plus the catalog and environment they belong to."""
    final = apply_holm(results)
    return {
        "schema": SCHEMA,
        "environment": environment,
        "holm_m": sum(r.has_evidence for r in final),
        "catalog": catalog_dict,
        "results": [r.to_dict() for r in final],
    }
