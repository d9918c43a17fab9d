"""`TFRecordDataset`: TFRecord shards of ``tf.train.Example`` s, parsed by a feature description."""

from __future__ import annotations

import glob
import os
from typing import Any, Mapping, Sequence

import tensorflow as tf

from fe_dist.dataset.tf_dataset import TFDataset
from fe_dist.errors import ConfigError


class TFRecordDataset(TFDataset):
    """Examples from TFRecord files (the format tfds and many pipelines write).

    A stream source, with `TFDataset`'s semantics: the files are read in sorted order every
    epoch, every rank reads all of them and keeps its chunk of each global batch, so N ranks
    equal one process. Features named in ``image_keys`` hold encoded JPEG/PNG bytes and are
    decoded to uint8 images.

    Args:
        files: A glob pattern, or a list of files.
        feature_description: {key: tf.io.FixedLenFeature(...)} as for
            ``tf.io.parse_single_example``.
        image_keys: Keys of encoded images to decode.
        channels: Channels of decoded images (1 or 3); needed when ``image_keys`` is given.
        num_samples: Records per epoch; None counts them once (every rank reads the files).
    """

    def __init__(self, files: str | Sequence[str], feature_description: Mapping[str, Any],
                 image_keys: Sequence[str] = (), channels: int | None = None,
                 num_samples: int | None = None) -> None:
        paths = sorted(glob.glob(files)) if isinstance(files, str) else list(files)
        if not paths:
            raise ConfigError(f"TFRecordDataset: no files match {files!r}. Give a glob pattern "
                              "or a list of .tfrecord files.")
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise ConfigError(f"TFRecordDataset: file {missing[0]!r} does not exist.")
        unknown = [k for k in image_keys if k not in feature_description]
        if unknown:
            raise ConfigError(f"TFRecordDataset: image_keys {unknown} are not in the feature "
                              f"description {sorted(feature_description)}.")
        if image_keys and channels not in (1, 3):
            raise ConfigError("TFRecordDataset: give channels=1 or 3 for the decoded images.")
        self.files = paths
        description = dict(feature_description)

        def parse(record: tf.Tensor) -> dict[str, tf.Tensor]:
            sample = tf.io.parse_single_example(record, description)
            for k in image_keys:
                sample[k] = tf.io.decode_image(sample[k], channels=channels,
                                               expand_animations=False)
            return sample

        records = tf.data.TFRecordDataset(paths)
        if num_samples is None:
            num_samples = int(records.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
            if num_samples == 0:
                raise ConfigError(f"TFRecordDataset: the files {paths[:3]} hold no records.")
        super().__init__(records.map(parse), num_samples)
