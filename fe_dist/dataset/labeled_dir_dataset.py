"""`LabeledDirDataset`: one sub-folder of images per class (the ImageNet layout)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fe_dist.dataset.image_files import IMAGE_EXTENSIONS, ImageFileSource, is_image_file
from fe_dist.errors import ConfigError


class LabeledDirDataset(ImageFileSource):
    """Images in class folders: ``root/<class>/<image>.jpg|.png``.

    Classes are numbered by sorted folder name (``class_indices`` keeps the mapping), files
    are taken in sorted order within a class. Folders are listed, not read: each rank opens
    only the files of the samples it trains on. The listing happens the first time the data
    is needed (in a run: the Estimator's checks, on every rank together).

    Args:
        root: The folder holding one sub-folder per class.
        data_key: The key of the decoded image (uint8, height x width x channels).
        label_key: The key of the class index (int64).
        channels: 1 or 3 to convert every image; None keeps the stored channel count (then
            the same in every file).
        skip_bad: Skip unreadable images instead of stopping (see `ImageFileSource`).
        dct_downscale: Decode JPEGs at reduced scale when the first op shrinks them to half
            or less: True, False, or None (when the images are large, see `ImageFileSource`).
    """

    def __init__(self, root: str | os.PathLike, data_key: str = "x", label_key: str = "y",
                 channels: int | None = None, skip_bad: bool = False,
                 dct_downscale: bool | None = None) -> None:
        super().__init__(data_key, channels, skip_bad, dct_downscale)
        self.root = Path(root)
        self.label_key = label_key
        self._classes: dict[str, int] | None = None

    def __repr__(self) -> str:
        return f"LabeledDirDataset({str(self.root)!r})"

    @property
    def class_indices(self) -> dict[str, int]:
        """{class folder name: label}."""
        self._ensure()
        return dict(self._classes)

    def _scan(self) -> tuple[list[str], dict[str, np.ndarray]]:
        if not self.root.is_dir():
            raise ConfigError(f"{self}: folder {str(self.root)!r} does not exist. Give the folder "
                              "that holds one sub-folder per class.")
        classes = sorted(d.name for d in self.root.iterdir()
                         if d.is_dir() and not d.name.startswith("."))
        if not classes:
            raise ConfigError(f"{self}: {str(self.root)!r} has no class sub-folders. Put each "
                              "class's images in root/<class name>/.")
        files, labels, others = [], [], []
        for label, name in enumerate(classes):
            folder = self.root / name
            entries = sorted(e for e in os.listdir(folder) if not e.startswith("."))
            images = [e for e in entries if is_image_file(e)]
            others += [str(folder / e) for e in entries if not is_image_file(e)]
            if not images:
                raise ConfigError(f"{self}: class folder {str(folder)!r} has no images "
                                  f"({'/'.join(IMAGE_EXTENSIONS)}). Add images or remove the "
                                  "folder.")
            files += [str(folder / e) for e in images]
            labels += [label] * len(images)
        if others:
            raise ConfigError(f"{self}: {len(others)} file(s) are not images fe_dist decodes "
                              f"({'/'.join(IMAGE_EXTENSIONS)}), e.g. {others[0]!r}. Move them "
                              "out of the class folders.")
        self._classes = {name: i for i, name in enumerate(classes)}
        return files, {self.label_key: np.asarray(labels, np.int64)}
