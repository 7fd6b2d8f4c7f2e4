"""`python -m flarectl` runs the command-line client."""

from flarectl.main import main

main()
