"""Deploy targets: where instances run. `local` runs them as processes on this host."""
