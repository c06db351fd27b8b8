"""Prometheus metrics for a token manager: `TokenMetrics` and `serve_metrics`.

Needs the ``metrics`` extra (``pip install 'shoptoken[metrics]'``, which
installs ``prometheus_client``). See docs/operations.md for the metrics and
the alert rules worth having.
"""

from ._exporter import Health, TokenMetrics
from ._http import serve_metrics

__all__ = ["Health", "TokenMetrics", "serve_metrics"]
