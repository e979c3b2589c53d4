#!/usr/bin/env python3
"""Reference values for crates/paper/src/inference.rs, from scipy and statsmodels.

Writes crates/paper/tests/fixtures/stats.json, which `crates/paper/tests/inference.rs`
reads: normal quantiles (scipy.stats.norm.ppf), exact McNemar p-values
(statsmodels mcnemar(exact=True)), Holm adjustments (statsmodels multipletests),
detectable differences at 80% power (statsmodels NormalIndPower, one sample),
Wald z of two independent proportions (statsmodels test_proportions_2indep),
and the Wald interval of a paired difference of proportions (numpy, from the
2x2 table). Needs scipy and statsmodels (not part of `just test`):

    python3 -m venv /tmp/stats && /tmp/stats/bin/pip install scipy statsmodels
    /tmp/stats/bin/python tools/make_stats_fixture.py
"""
import json
from pathlib import Path

import numpy as np
import scipy
import statsmodels
from scipy.stats import norm
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import test_proportions_2indep

OUT = Path(__file__).resolve().parent.parent / "crates/paper/tests/fixtures/stats.json"


def main() -> None:
    quantiles = [[p, float(norm.ppf(p))] for p in [1e-6, 0.001, 0.01, 0.02, 0.025, 0.1, 0.3, 0.5, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995, 0.99975, 0.999999]]
    upper_tails = [[z, float(norm.sf(z))] for z in [0.0, 0.5, 1.0, 1.96, 2.5, 3.0, 4.0, 6.0]]
    mcnemar_cases = []
    for b, c in [(0, 1), (1, 0), (3, 3), (5, 12), (30, 18), (100, 130), (700, 650), (2, 40), (0, 9)]:
        table = [[50, b], [c, 60]]
        mcnemar_cases.append([b, c, float(mcnemar(table, exact=True).pvalue)])
    holm_cases = []
    for p in [[0.01, 0.04, 0.03, 0.005], [0.2, 0.01], [0.5], [0.001, 0.02, 0.04, 0.04, 0.3]]:
        holm_cases.append([p, [float(x) for x in multipletests(p, alpha=0.05, method="holm")[1]]])
    power = NormalIndPower()
    detectable_cases = []
    for se, m in [(0.01, 1), (0.0153, 1), (0.02, 5), (0.005, 3)]:
        # One sample of one observation whose sd is `se`: the effect size is the detectable difference in se units.
        es = power.solve_power(effect_size=None, nobs1=1, alpha=0.05 / m, power=0.8, ratio=0, alternative="two-sided")
        detectable_cases.append([se, m, float(es * se)])
    z_cases = []
    for a, b, n in [(0.0542, 0.0563, 25000), (0.0258, 0.0243, 6000), (0.036, 0.05, 500), (0.05, 0.05, 7600)]:
        count_a, count_b = round(a * n), round(b * n)
        res = test_proportions_2indep(count_a, n, count_b, n, method="wald", compare="diff")
        z_cases.append([count_a / n, count_b / n, n, float(res.statistic)])
    wald_cases = []
    for n, b, c in [(500, 30, 18), (500, 5, 12), (25000, 700, 650), (200, 0, 4)]:
        d = (b - c) / n
        var = ((b + c) - (b - c) ** 2 / n) / n**2
        se = float(np.sqrt(var))
        z = float(norm.ppf(0.975))
        wald_cases.append([n, b, c, d, d - z * se, d + z * se])
    fixture = {
        "made_by": f"tools/make_stats_fixture.py (scipy {scipy.__version__}, statsmodels {statsmodels.__version__})",
        "normal_quantile": quantiles,
        "normal_upper_tail": upper_tails,
        "mcnemar_exact": mcnemar_cases,
        "holm": holm_cases,
        "detectable": detectable_cases,
        "binomial_z": z_cases,
        "paired_wald": wald_cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
