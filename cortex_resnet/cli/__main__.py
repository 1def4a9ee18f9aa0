"""``python -m cortex_resnet.cli``: the same as the ``cortex-resnet`` command."""

from . import main

main()
