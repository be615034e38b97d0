"""What Conveyor tells the outside world: commit statuses back to the git provider,
through a durable outbox (`statuses`)."""
