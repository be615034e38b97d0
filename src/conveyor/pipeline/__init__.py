"""Pipelines as code: load `conveyor.yml` with positions, check it, compile it to a plan.

parse (yamlpos) → schema (pydantic) → lint (references, cycles) → compile (plan).
"""
