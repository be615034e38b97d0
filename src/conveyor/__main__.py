"""`python -m conveyor`."""

from conveyor.cli.main import main

main()
