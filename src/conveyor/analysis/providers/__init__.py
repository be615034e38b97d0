"""Metric providers, one file each behind the `MetricProvider` contract (`base`):
`process` (CPU and RSS of a slot's instances) so far."""
