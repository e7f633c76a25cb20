"""Builds the bundled example: the seed KPI forecaster, trained in Keras on synthetic KPI data.

The data is synthetic (not measured): three radio KPIs at 10-minute steps with daily and weekly cycles,
correlation between them, noise and occasional outliers. Features are min-max scaled with the physical
ranges CQI 0-15, UE_TX_POWER -17-23 dBm, DL_PRB_USAGE_RATE 0-100 %.

The model is the seed notebook's: Input(5, 3) -> RNN(SimpleRNNCell(2, activation=None),
return_sequences=True) -> the last 2 timesteps (Cropping1D in place of the notebook's Lambda) -> (2, 2):
CQI and DL_PRB_USAGE_RATE, 2 steps ahead, from 3 KPIs over 5 steps.

Run with the pinned packages of tests/fixtures/requirements.txt:
    python examples/kpi/make_example.py
It writes kpi_forecaster.keras, input.npy (8 windows, scaled) and expected.npy (Keras predict).
"""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402
import keras  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RANGES = {"CQI": (0.0, 15.0), "UE_TX_POWER": (-17.0, 23.0), "DL_PRB_USAGE_RATE": (0.0, 100.0)}


def synthetic_kpis(steps, rng):
    t = np.arange(steps)
    day = 2 * np.pi * t / 144.0  # 144 ten-minute steps a day
    week = 2 * np.pi * t / (144.0 * 7)
    load = 0.5 + 0.3 * np.sin(day - 1.8) + 0.1 * np.sin(week) + 0.05 * rng.standard_normal(steps)
    load = np.clip(load, 0.0, 1.0)
    prb = 100.0 * load + 4.0 * rng.standard_normal(steps)
    cqi = 12.0 - 5.0 * load + 0.8 * rng.standard_normal(steps)
    tx = -5.0 + 18.0 * load + 2.0 * rng.standard_normal(steps)
    spikes = rng.random(steps) < 0.005
    prb[spikes] = 100.0
    cqi[spikes] = 2.0
    kpis = np.stack([cqi, tx, prb], axis=1)
    lo = np.array([r[0] for r in RANGES.values()])
    hi = np.array([r[1] for r in RANGES.values()])
    return np.clip(kpis, lo, hi), lo, hi


def main():
    rng = np.random.default_rng(7)
    keras.utils.set_random_seed(7)
    raw, lo, hi = synthetic_kpis(144 * 28, rng)
    scaled = ((raw - lo) / (hi - lo)).astype("float32")
    window, horizon = 5, 2
    xs, ys = [], []
    for s in range(len(scaled) - window - horizon + 1):
        xs.append(scaled[s : s + window])
        # Targets: CQI and PRB usage over the next 2 steps.
        ys.append(scaled[s + window : s + window + horizon][:, [0, 2]])
    x, y = np.array(xs), np.array(ys)

    inputs = keras.Input((window, 3), name="kpis")
    h = keras.layers.RNN(keras.layers.SimpleRNNCell(2, activation=None), return_sequences=True)(inputs)
    outputs = keras.layers.Cropping1D((window - horizon, 0), name="last_2_steps")(h)
    model = keras.Model(inputs, outputs, name="kpi_forecaster")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    model.fit(x, y, epochs=40, batch_size=64, validation_split=0.2, shuffle=False, verbose=2)
    model.save(os.path.join(HERE, "kpi_forecaster.keras"))

    sample = x[-8:]
    np.save(os.path.join(HERE, "input.npy"), sample)
    np.save(os.path.join(HERE, "expected.npy"), model.predict(sample, verbose=0).astype("float32"))


if __name__ == "__main__":
    main()
