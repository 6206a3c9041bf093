"""Print the calibration table of lossscape.stats: test x n x alpha -> false "supported", false
"refuted" (both under the null, effect exactly at the claim's boundary), power (planted effect
found) and the reversed effect refuted. The same simulation as tests/test_calibration.py, which
asserts its bounds.

    python benchmarks/calibration.py [--draws 2000]
"""
import argparse

from lossscape import calibration as cal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2000, help="data sets per test, n and condition")
    draws = parser.parse_args().draws
    print(f"{draws} draws per cell; 99.9% binomial bound on a false-call rate: "
          + ", ".join(f"{cal.binomial_bound(draws, a):.4f} at alpha {a:g}" for a in cal.ALPHAS))
    print(f"| {'test':32s} | {'n':>2s} | {'alpha':>5s} | {'false supported':>15s} | {'false refuted':>13s} | "
          f"{'power':>6s} | {'reversed refuted':>16s} |")
    print(f"|{'-' * 34}|{'-' * 4}|{'-' * 7}|{'-' * 17}|{'-' * 15}|{'-' * 8}|{'-' * 18}|")
    for case in cal.CASES:
        for n in cal.NS:
            r = cal.rates(case, n, draws)
            for alpha in cal.ALPHAS:
                fs, fr = r[("null", alpha)]
                print(f"| {case.name:32s} | {n:2d} | {alpha:5g} | {fs:15.4f} | {fr:13.4f} | "
                      f"{r[('planted', alpha)][0]:6.3f} | {r[('reversed', alpha)][1]:16.3f} |")


if __name__ == "__main__":
    main()
