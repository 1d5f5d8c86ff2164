"""``python -m meshplane`` runs the CLI."""

from meshplane.cli.main import main

main()
