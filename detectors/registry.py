"""The monitor kinds by the names policies use.

>>> sorted(MONITORS)[:3]
['adwin', 'anomaly_rate', 'concept_drift']
>>> build("adwin", {"series": "error"})
Adwin(series='error', delta=0.05, clock=32, grace_period=10, direction=None)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftwarden.detectors.base import Monitor
from driftwarden.detectors.concept import ConceptDrift
from driftwarden.detectors.control import Cusum, Ewma
from driftwarden.detectors.drift import FeatureDrift, PredictionDrift
from driftwarden.detectors.eddm import Eddm
from driftwarden.detectors.estimated import EstimatedPerformance
from driftwarden.detectors.fairness import (
    DemographicParity,
    EqualizedOdds,
    EqualOpportunity,
    GroupPerformance,
    PredictiveParity,
)
from driftwarden.detectors.hddm import HddmA, HddmW
from driftwarden.detectors.multivariate import AnomalyRate, DomainClassifier
from driftwarden.detectors.performance import Performance
from driftwarden.detectors.quality import DataQuality
from driftwarden.detectors.streaming import Adwin, Ddm, Kswin, PageHinkley

MONITORS: dict[str, type[Monitor]] = {
    cls.kind: cls for cls in (Adwin, PageHinkley, Kswin, Ddm, Eddm, HddmA, HddmW, FeatureDrift, Performance)
}
MONITORS.update(
    (cls.kind, cls)
    for cls in (
        DemographicParity,
        EqualOpportunity,
        EqualizedOdds,
        PredictiveParity,
        GroupPerformance,
    )
)

MONITORS.update(
    (cls.kind, cls)
    for cls in (
        Cusum,
        Ewma,
        ConceptDrift,
        PredictionDrift,
        DomainClassifier,
        AnomalyRate,
        DataQuality,
        EstimatedPerformance,
    )
)


def build(kind: str, params: Mapping[str, Any]) -> Monitor:
    """A monitor of ``kind`` configured by ``params``; ValueError names what is wrong."""
    try:
        cls = MONITORS[kind]
    except KeyError:
        raise ValueError(f"unknown monitor kind {kind!r}; known kinds: {', '.join(sorted(MONITORS))}") from None
    try:
        return cls(**params)
    except TypeError as e:
        raise ValueError(f"{kind}: {e}") from None
