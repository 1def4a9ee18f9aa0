"""``python -m cortex_resnet.cli``: the same as the ``cortex-resnet`` command."""

from cortex_resnet.cli import main

main()
