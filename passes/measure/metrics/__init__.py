"""Task metrics per model kind, one small interface (:class:`.base.Metric`): ``evaluate(reference outputs,
candidate outputs, inputs) -> MetricResult``.

- ``rec``: :class:`.rec.RecMetric` (strings, confidence, drop_score crossings, prob diff, CER);
- ``det``: :class:`.det.DetMetric` (DB boxes matched at IoU >= 0.5 → P/R/F, map diff, flipping pixels);
- ``cls``: :class:`.cls.ClsMetric` (label agreement, score change, rotation decisions).

>>> metric = metric_for("rec", dictionary=chars)
>>> print("\\n".join(metric.evaluate(onnx_outputs, ncnn_outputs, inputs).render()))
"""

from __future__ import annotations

from typing import Any

from ncnnpass.ir.errors import NcnnpassError

from .base import Metric, MetricError, MetricResult
from .cls import ClsMetric
from .det import DetMetric
from .rec import RecMetric

__all__ = ["METRICS", "Metric", "MetricError", "MetricResult", "metric_for", "RecMetric", "DetMetric", "ClsMetric"]

METRICS: dict[str, type] = {"rec": RecMetric, "det": DetMetric, "cls": ClsMetric}


def metric_for(kind: str | None, **options: Any) -> Metric:
    """The metric of a model kind, built with ``options`` (e.g. ``dictionary=`` for rec)."""
    try:
        cls = METRICS[kind or ""]
    except KeyError:
        raise NcnnpassError(f"no task metric for model kind {kind!r} (known: {', '.join(METRICS)})") from None
    return cls(**options)
