"""``python -m fe_dist.bench``: the ``fe-bench`` command."""

from fe_dist.bench.cli import main

main()
