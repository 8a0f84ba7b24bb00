"""Data sources: the built-in demo set, your own folder of photos, and TFDS datasets.

A dataset made in the app (``local:<name>``, stored by ``core.datasets``) is read like a folder.
Every source ends as the same thing: train and test ``tf.data`` pipelines of
``(float32 image in 0..255 resized to the backbone's resolution, int64 label)`` plus a
``DatasetInfo`` with people's class names. Use it as ``from core import data`` and
``data.load_splits(...)``, ``data.describe(...)``, ``data.sample_images(...)``, ``data.check_source(...)``.

The package, one module per concept (each imports its siblings directly, never through this file):

- ``info``: what every source ends as (``DatasetInfo``, ``Splits``) and ``finish_pipeline``, the shared last
  steps of a pipeline (cache small splits, cast to float). Class names come from ``core.class_names``.
- ``folders``: the folder source and the demo set (a folder of drawn images): ``scan_folder`` and its rules,
  the listing, the ``tf.data`` pipeline of files, the check that each class has an image that decodes.
- ``decoding``: which decoder each file takes (TensorFlow's, in parallel, where it gives the safe reader's pixels;
  ``core.images`` for the rest), decided from its header, and the parallel decode itself.
- ``image_cache``: a split's decoded, resized images as one memory-mapped uint8 array, written on the first full
  pass and read by every later pipeline of the same files (a second run, backbone or evaluation).
- ``tfds``: TFDS datasets: where prepared copies are looked for, the builder (with a did-you-mean for unknown
  names), loading a prepared dataset, and ``download_tfds``. The only module importing tensorflow_datasets.
- ``sources``: the entry points above, dispatching on ``DataConfig.kind`` to ``folders`` or ``tfds``; also
  ``data_fingerprint`` (what caches keyed by the data compare), ``test_image_files`` (the file behind a test
  image, for cleaning a dataset made in the app from the evidence) and ``image_files`` (both splits' files, for
  the Explore page's map).
- ``cli`` (run by ``__main__``): ``python -m core.data --download stanford_dogs`` downloads and prepares a
  TFDS dataset (the Data page's Download button, from a terminal).

TensorFlow and tensorflow_datasets are imported lazily, inside the functions that build or load pipelines
(``info.finish_pipeline``, ``folders.folder_pipeline``, and the functions of ``tfds``), so importing this
package is cheap and pages can describe a dataset (class names, counts, sample images) without paying for
TensorFlow; a TFDS dataset is the exception, since describing it means loading it.
"""

from core.class_names import format_class_name, stanford_dogs_class_names
from core.data.folders import MIN_IMAGES_PER_CLASS, FolderListing, folder_pipeline, load_file, scan_folder
from core.data.info import (
    CACHE_IN_MEMORY_BYTES,
    UNBALANCED_RATIO,
    DatasetInfo,
    Splits,
)
from core.data.sources import (
    check_source,
    data_fingerprint,
    describe,
    image_files,
    load_splits,
    sample_images,
    test_image_files,
)
from core.data.tfds import TFDS_TEST_SPLITS, download_tfds, tfds_data_dirs

__all__ = [
    "CACHE_IN_MEMORY_BYTES",
    "MIN_IMAGES_PER_CLASS",
    "TFDS_TEST_SPLITS",
    "UNBALANCED_RATIO",
    "DatasetInfo",
    "FolderListing",
    "Splits",
    "check_source",
    "data_fingerprint",
    "describe",
    "download_tfds",
    "folder_pipeline",
    "format_class_name",
    "image_files",
    "load_file",
    "load_splits",
    "sample_images",
    "scan_folder",
    "stanford_dogs_class_names",
    "test_image_files",
    "tfds_data_dirs",
]
