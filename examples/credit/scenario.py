"""The demo's world: loan applications from River's Agrawal generator, with a drift at a known point.

Before the drift, approvals follow Agrawal's rule 2 (age and education); from ``drift_at`` on they
follow rule 6 (disposable income: salary, commission, loan) — a concept drift that breaks the
model — and applicants get older and drive newer cars — a covariate drift in ``age`` and ``car``
that the new rule does not depend on.

>>> world = Scenario(n=300, drift_at=200, seed=1)
>>> X, y = world.sample()
>>> len(X), sorted(X.columns)[:3], bool(world.shifted(X).age.mean() > X.age.mean())
(300, ['age', 'car', 'commission'], True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from river.datasets import synth

RULE_BEFORE, RULE_AFTER = 2, 6
NOISE = 0.05
"""Share of labels flipped by Agrawal's perturbation: no model is perfect in this world."""


def agrawal(rule: int, n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rows, labels = [], []
    stream = synth.Agrawal(classification_function=rule, seed=seed, perturbation=NOISE)
    for x, y in stream.take(n):
        rows.append(x)
        labels.append(int(y))
    return pd.DataFrame(rows), np.asarray(labels)


@dataclass(frozen=True)
class Scenario:
    n: int = 16_000
    drift_at: int = 8_000
    seed: int = 7

    def history(self, n: int = 4_000) -> tuple[pd.DataFrame, np.ndarray]:
        """Pre-drift data the first champion is trained on."""
        return agrawal(RULE_BEFORE, n, self.seed + 1000)

    def sample(self) -> tuple[pd.DataFrame, np.ndarray]:
        """The live stream's features and true labels, the drift applied from ``drift_at``."""
        before_X, before_y = agrawal(RULE_BEFORE, self.drift_at, self.seed)
        after_X, after_y = agrawal(RULE_AFTER, self.n - self.drift_at, self.seed + 1)
        X = pd.concat([before_X, self.shifted(after_X)], ignore_index=True)
        return X, np.concatenate([before_y, after_y])

    @staticmethod
    def shifted(X: pd.DataFrame) -> pd.DataFrame:
        out = X.copy()
        out["age"] = np.minimum(out["age"] + 12, 80)
        out["car"] = np.minimum(out["car"] + 6, 20)
        return out
