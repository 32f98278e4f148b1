"""`python -m addp_agent` runs the CLI."""

from addp_agent.cli import main

main()
