"""`conveyor agent`: the process on every host that runs its instances (docs/fleet.md)."""
