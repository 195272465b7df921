"""The demo's trainer: a gradient-boosted classifier for loan approval.

driftwarden calls it in a subprocess as ``train(X, y, params)`` with the exported labeled window.

>>> import pandas as pd
>>> model = train(pd.DataFrame({"age": [20, 30, 60, 70] * 10}), pd.Series([0, 0, 1, 1] * 10), {"max_iter": 5})
>>> model.predict(pd.DataFrame({"age": [25, 65]})).tolist()
[0, 1]
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier


def train(X: pd.DataFrame, y: pd.Series, params: dict[str, Any]) -> HistGradientBoostingClassifier:
    model = HistGradientBoostingClassifier(
        max_iter=int(params.get("max_iter", 100)),
        learning_rate=float(params.get("learning_rate", 0.1)),
        random_state=int(params.get("seed", 0)),
    )
    return model.fit(X, y.astype(int))
