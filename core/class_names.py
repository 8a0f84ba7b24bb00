"""People's class names from folder names: 'n02085620-Chihuahua' -> 'Chihuahua', and the Stanford Dogs breeds.

Its own module because two packages name classes from folders: the data sources (``core.data``) and the
datasets made in the app (``core.datasets``, which imports a zip's folders); neither should import the other.
"""

from __future__ import annotations

import re

from core.imagenet import dog_breed_names

WNID_FOLDER = re.compile(r"^n\d{8}-(.+)$")


def format_class_name(folder_name: str) -> str:
    """'n02085620-Chihuahua' -> 'Chihuahua'; 'golden_retriever' -> 'golden retriever'."""
    match = WNID_FOLDER.match(folder_name)
    name = match.group(1) if match else folder_name
    return name.replace("_", " ")


def stanford_dogs_class_names() -> list[str]:
    """The 120 breeds in TFDS label order (sorted by WordNet id), shipped so they work offline."""
    return list(dog_breed_names())
