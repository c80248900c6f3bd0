"""``python -m medgraph`` runs the CLI."""

from medgraph.cli import main

main()
