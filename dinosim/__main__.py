"""`python -m dinosim` runs the CLI."""

from dinosim.cli import main

main()
