"""payments-api: a small example service that Conveyor builds, tests and deploys."""
