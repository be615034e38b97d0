"""The scheduler: run and job lifecycles in the database, leases, retries, fair share."""
