"""``python -m tower_cat.finetune …`` = ``tower-cat finetune …``: the entry point for ``accelerate launch -m``."""

import sys

from tower_cat.cli import main

if __name__ == "__main__":
    main(["finetune", *sys.argv[1:]])
