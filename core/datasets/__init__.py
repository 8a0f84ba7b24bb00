"""Datasets made in the app: a learner's uploads, zips and snapshots, stored as folders under the data directory.

Pages call these functions; the data source ``local:<name>`` reads a dataset through ``images(name)``. PIL and
numpy only (never TensorFlow), and nothing here imports ``core.data``, which imports this package.

- ``names``: which dataset and class names are allowed (safe folder names everywhere, not split words).
- ``store``: the layout on disk, the lock and crash recovery, reading (summaries, images, trash) and every change
  (create, classes, move, remove, restore, delete), each one rename.
- ``archives``: which members of an untrusted zip are images of which class (``zip_members``), and a dataset as a
  zip to download (``dataset_zip``).
- ``ingest``: adding uploads and zips: checked, hashed and thumbnailed in parallel, staged, committed at once.
- ``cli`` (run by ``__main__``): ``python -m core.datasets list | import NAME ZIP | export NAME OUT.zip``.
"""

from core.datasets.archives import ZipContents, ZipImage, ZipLimits, dataset_zip, zip_members
from core.datasets.ingest import IngestReport, add_images, import_zip
from core.datasets.names import check_class_name, check_dataset_name, class_name_from_folder
from core.datasets.store import (
    MIN_IMAGES_ADVISED,
    UNBALANCED_RATIO,
    DatasetSummary,
    StoredImage,
    TrashedImage,
    add_class,
    content_digest,
    create_dataset,
    dataset_folder,
    datasets_root,
    delete_class,
    delete_dataset,
    empty_trash,
    exists,
    find_image,
    image_at,
    images,
    list_datasets,
    move_image,
    recover,
    remove_image,
    rename_class,
    restore,
    source_of,
    summary,
    thumbnail,
    trash,
)

__all__ = [
    "MIN_IMAGES_ADVISED",
    "UNBALANCED_RATIO",
    "DatasetSummary",
    "IngestReport",
    "StoredImage",
    "TrashedImage",
    "ZipContents",
    "ZipImage",
    "ZipLimits",
    "add_class",
    "add_images",
    "check_class_name",
    "check_dataset_name",
    "class_name_from_folder",
    "content_digest",
    "create_dataset",
    "dataset_folder",
    "dataset_zip",
    "datasets_root",
    "delete_class",
    "delete_dataset",
    "empty_trash",
    "exists",
    "find_image",
    "image_at",
    "images",
    "import_zip",
    "list_datasets",
    "move_image",
    "recover",
    "remove_image",
    "rename_class",
    "restore",
    "source_of",
    "summary",
    "thumbnail",
    "trash",
    "zip_members",
]
