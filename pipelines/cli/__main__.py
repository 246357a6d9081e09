"""``python -m pipelines.cli``: the ``binds`` command."""

from pipelines.cli import main

main()
