"""``python -m tower_cat.cli``: the same entry point as the ``tower-cat`` script."""

from tower_cat.cli import main

main()
