"""``python -m airpack``."""

from airpack.cli import main

main()
