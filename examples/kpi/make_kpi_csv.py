"""Writes examples/kpi/kpi.csv: four weeks of synthetic radio-cell KPIs at 10-minute steps.

The data is synthetic (generated here, not measured), shaped like one LTE cell's performance counters:

- an offered load with a daily cycle (quiet at night, a morning rise, a lunchtime bump, an evening peak),
  a weekly cycle (weekends start later and have no office peak), a slowly wandering level (AR(1)), and
  short traffic bursts of 30-90 minutes;
- DL_PRB_USAGE_RATE (%) follows the load;
- CQI (channel quality, 0-15) falls as the cell fills (more users at the cell edge, more interference),
  with its own noise and occasional interference dips;
- UE_TX_POWER (dBm) rises with the load (power control pushes cell-edge users up);
- measurement noise on every KPI, rare outliers (counter glitches), and clipping to the physical ranges
  CQI 0-15, UE_TX_POWER -17-23 dBm, DL_PRB_USAGE_RATE 0-100 %.

Run with the pinned numpy of tests/fixtures/requirements.txt:
    python examples/kpi/make_kpi_csv.py
The output is deterministic (seeded) and committed, so nothing else needs Python.
"""
import datetime as dt
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS_PER_DAY = 144  # 10-minute steps
DAYS = 28
START = dt.datetime(2024, 3, 4)  # a Monday


def daily_profile(hour, weekend):
    """Relative load over a day (0..1) from the hour of day (float)."""
    bump = lambda centre, width, height: height * np.exp(-0.5 * ((hour - centre) / width) ** 2)  # noqa: E731
    night = 0.08
    if weekend:
        return night + bump(13.0, 3.5, 0.45) + bump(20.5, 2.2, 0.55)
    return night + bump(9.0, 1.6, 0.45) + bump(12.8, 1.2, 0.25) + bump(20.0, 2.0, 0.62)


def main():
    rng = np.random.default_rng(2024)
    n = STEPS_PER_DAY * DAYS
    t = np.arange(n)
    hour = (t % STEPS_PER_DAY) / 6.0
    weekday = (t // STEPS_PER_DAY) % 7
    weekend = weekday >= 5

    base = np.where(weekend, daily_profile(hour, True), daily_profile(hour, False))
    # A slowly wandering level: AR(1) with a time constant of about 4 hours.
    drift = np.zeros(n)
    for i in range(1, n):
        drift[i] = 0.96 * drift[i - 1] + 0.02 * rng.standard_normal()
    # Traffic bursts: a few a week, 30-90 minutes long, rising and falling smoothly.
    bursts = np.zeros(n)
    for start in np.flatnonzero(rng.random(n) < 0.004):
        length = rng.integers(3, 10)
        height = rng.uniform(0.15, 0.35)
        shape = np.sin(np.linspace(0, np.pi, length))
        end = min(n, start + length)
        bursts[start:end] += height * shape[: end - start]
    load = np.clip(base * (1.0 + drift) + bursts, 0.0, 1.05)

    prb = 4.0 + 88.0 * load + 3.0 * rng.standard_normal(n)
    # CQI reacts to load with a slight lag (interference builds up with neighbour load).
    lagged = np.concatenate([[load[0]], load[:-1]])
    cqi = 12.8 - 4.5 * (0.6 * load + 0.4 * lagged) + 0.45 * rng.standard_normal(n)
    tx = -9.0 + 17.0 * load + 1.6 * rng.standard_normal(n)

    # Interference dips: CQI drops for 20-60 minutes, UEs transmit harder.
    for start in np.flatnonzero(rng.random(n) < 0.002):
        end = min(n, start + rng.integers(2, 7))
        cqi[start:end] -= rng.uniform(2.0, 4.0)
        tx[start:end] += rng.uniform(2.0, 5.0)
    # Counter glitches: isolated outliers.
    glitches = rng.random(n) < 0.003
    which = rng.integers(0, 3, n)
    prb[glitches & (which == 0)] = 100.0
    cqi[glitches & (which == 1)] = rng.uniform(0.0, 3.0, (glitches & (which == 1)).sum())
    tx[glitches & (which == 2)] = 23.0

    cqi = np.clip(cqi, 0.0, 15.0)
    tx = np.clip(tx, -17.0, 23.0)
    prb = np.clip(prb, 0.0, 100.0)

    path = os.path.join(HERE, "kpi.csv")
    with open(path, "w", newline="\n") as f:
        f.write("timestamp,CQI,UE_TX_POWER,DL_PRB_USAGE_RATE\n")
        for i in range(n):
            stamp = (START + dt.timedelta(minutes=10 * i)).strftime("%Y-%m-%d %H:%M")
            f.write(f"{stamp},{cqi[i]:.2f},{tx[i]:.2f},{prb[i]:.2f}\n")
    print(f"wrote {path}: {n} rows")


if __name__ == "__main__":
    main()
