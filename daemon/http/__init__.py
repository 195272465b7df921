"""The daemon's HTTP face: ``/metrics``, ``/livez``, ``/readyz``, the ``/api/v1`` JSON API with its admin
endpoints, and the status page at ``/`` (see docs/operating.md)."""
