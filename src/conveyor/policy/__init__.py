"""Deployment policy (docs/policy.md): the facts a deployment's risk score is computed
from. Protected environments, approvals and freeze windows join it with issue 13."""
