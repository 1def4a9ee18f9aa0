"""The data stage: datasets for training unrolled circuits, registered by name.

``base`` (the leaf: :class:`Dataset`), ``generated`` (seeded and shipped sets), ``files``
(MNIST and CIFAR-10 from a folder the user names) and ``datasets`` (the registry).
"""

from cortex_resnet.data.base import Dataset
from cortex_resnet.data.datasets import DATASETS, get_dataset, known_datasets

__all__ = ["Dataset", "DATASETS", "get_dataset", "known_datasets"]
