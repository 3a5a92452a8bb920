"""The regime calibration figures quoted in regime.py and docs/architecture.md, reproduced.

Weekly-ish readings (every 5th session, trailing window, point in time) of the detector on the
equal-weight mean return of the bundled skfolio S&P 500 stocks, 1990-2022: label frequencies and
the months with CRISIS readings.

    .venv/bin/python -m benchmarks.regime_calibration
"""

from __future__ import annotations


def main() -> None:
    from skfolio.datasets import load_sp500_dataset

    from quant_assets.selection.regime import RegimeSettings, regime_timeline

    returns = load_sp500_dataset().pct_change(fill_method=None).iloc[1:]
    timeline = regime_timeline(returns, settings=RegimeSettings(), step=5)
    shares = timeline["label"].value_counts(normalize=True)
    print(f"{len(timeline)} readings, {timeline.index[0].date()} .. {timeline.index[-1].date()}")
    for label in ("QUIET", "NORMAL", "TURBULENT", "CRISIS"):
        print(f"  {label:<10} {shares.get(label, 0.0):6.1%}")
    crisis = timeline.index[timeline["label"] == "CRISIS"].strftime("%Y-%m")
    print("CRISIS months:", ", ".join(sorted(set(crisis))))


if __name__ == "__main__":
    main()
