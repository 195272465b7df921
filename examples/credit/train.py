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
from threadpoolctl import threadpool_limits

#: OpenMP threads for the fit: on a window of a few thousand rows the thread team costs more than it saves
#: (960 rows, 100 iterations: 0.3 s of CPU on one thread against 4-6 s on two, same model, on a loaded 2-core
#: machine).
FIT_THREADS = 1


def train(X: pd.DataFrame, y: pd.Series, params: dict[str, Any]) -> HistGradientBoostingClassifier:
    model = HistGradientBoostingClassifier(
        max_iter=int(params.get("max_iter", 100)),
        learning_rate=float(params.get("learning_rate", 0.1)),
        random_state=int(params.get("seed", 0)),
    )
    with threadpool_limits(limits=FIT_THREADS, user_api="openmp"):
        return model.fit(X, y.astype(int))
