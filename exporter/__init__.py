"""analytics-dashboard: platform usage analytics as a Prometheus exporter and a JSON API."""

__version__ = "0.1.0"
