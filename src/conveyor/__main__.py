"""`python -m conveyor`."""

from conveyor.cli.entry import main

main()
