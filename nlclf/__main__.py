"""`python -m nlclf ...`: the command line."""

from .cli import main

main()
