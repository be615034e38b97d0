"""The runner: executes planned jobs with the shell executor, masks secrets in logs,
parses reports and applies gates. It reaches the coordinator over HTTP only and never
imports storage."""
