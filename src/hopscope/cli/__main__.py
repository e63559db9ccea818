"""``python -m hopscope.cli``."""

from hopscope.cli.app import main

main()
