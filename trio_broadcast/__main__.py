"""``python -m trio_broadcast``: the same as the ``trio-broadcast`` command."""

from .cli import main

main()
