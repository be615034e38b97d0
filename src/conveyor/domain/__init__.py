"""Pure domain types: lifecycles, status merging and failure classes. No I/O, no imports
from the rest of Conveyor."""
