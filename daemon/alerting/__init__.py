"""Alerts that reach people: alert state with Prometheus semantics, annotation templates, the
outbox, the Alertmanager client and apprise notifiers (see docs/alerting.md)."""
