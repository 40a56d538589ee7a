"""Forecast and anomaly metrics (docs/metrics.md#forecasts-and-anomalies) from the shared forecasts snapshot.

The ``series`` label takes the tracked series' names, which come from the configuration (the
features and funnels configured): a bounded set. A series too short to forecast
(``insufficient_history``) has no samples; nor has one whose source failed this time.
"""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from .base import AreaCollector, helptext

SOURCE_NAMES = {"events": "the identified events", "plausible": "Plausible"}


class ForecastsCollector(AreaCollector):

    def _families(self, with_samples: bool) -> list[Metric]:
        source = f"the daily series of {' and '.join(SOURCE_NAMES[name] for name in self.area.sources)}"

        def family(name: str, what: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, helptext(what, source, self.ttl), labels=["series"])

        expected = family("analytics_forecast_expected",
                          "Today's forecast of the tracked daily series, made from the complete days before it "
                          "(the median of the forecast distribution; docs/forecasting.md).")
        lower = family("analytics_forecast_lower", "Lower bound of the 95% band of today's forecast, never below 0.")
        upper = family("analytics_forecast_upper", "Upper bound of the 95% band of today's forecast.")
        score = family("analytics_anomaly_score",
                       "The last complete day's forecast error in standard deviations of the one-day-ahead error "
                       "(square-root scale), positive above the forecast; beyond +/-3.5 it is an anomaly.")
        anomaly = family("analytics_anomaly",
                         "1 when the last complete day of the series is an anomaly (outside the 3.5-sigma band "
                         "forecast for it from the days before it), else 0.")
        families = [expected, lower, upper, score, anomaly]
        if not with_samples:
            return families
        forecasts = self.area.peek_set()
        if forecasts is None:
            return []
        for name, analysis in forecasts.analyses.items():
            for today in analysis.forecast.forecast[:1]:
                expected.add_metric([name], today.expected)
                lower.add_metric([name], today.lower)
                upper.add_metric([name], today.upper)
            check = forecasts.checks[name]
            if check is not None:
                score.add_metric([name], check.score)
                anomaly.add_metric([name], float(check.anomaly))
        return [family for family in families if family.samples]
