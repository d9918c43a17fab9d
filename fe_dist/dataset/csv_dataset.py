"""`CSVDataset`: a CSV of image paths (relative to the CSV) and other columns."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from fe_dist.dataset.image_files import ImageFileSource
from fe_dist.errors import ConfigError


class CSVDataset(ImageFileSource):
    """One sample per CSV row: an image file and numeric columns (labels and others).

    Paths are relative to the CSV's folder (or absolute). The header, the columns and that
    every file exists are checked when the data is first needed (in a run: before training,
    on every rank together); files are opened only by the rank that trains on them.

    Args:
        path: The CSV file, with a header row.
        data_key: The column of image paths; the decoded image keeps this key.
        columns: Other columns to keep (numbers: ints become int64, others float32); None
            keeps every other column.
        channels: 1 or 3 to convert every image; None keeps the stored channel count.
        skip_bad: Skip unreadable images instead of stopping (see `ImageFileSource`).
        dct_downscale: Decode JPEGs at reduced scale when the first op shrinks them to half
            or less: True, False, or None (when the images are large, see `ImageFileSource`).
        delimiter: The CSV delimiter.
    """

    def __init__(self, path: str | os.PathLike, data_key: str = "x",
                 columns: Sequence[str] | None = None, channels: int | None = None,
                 skip_bad: bool = False, dct_downscale: bool | None = None,
                 delimiter: str = ",") -> None:
        super().__init__(data_key, channels, skip_bad, dct_downscale)
        self.path = Path(path)
        self.columns = None if columns is None else list(columns)
        self.delimiter = delimiter

    def __repr__(self) -> str:
        return f"CSVDataset({str(self.path)!r})"

    def _scan(self) -> tuple[list[str], dict[str, np.ndarray]]:
        if not self.path.is_file():
            raise ConfigError(f"{self}: file {str(self.path)!r} does not exist. Give the path of "
                              "a CSV with a header row.")
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f, delimiter=self.delimiter))
        if not rows:
            raise ConfigError(f"{self}: {str(self.path)!r} is empty; it needs a header row "
                              f"naming the columns ({self.data_key!r} for image paths).")
        header, body = rows[0], rows[1:]
        wanted = [c for c in header if c != self.data_key] if self.columns is None \
            else self.columns
        missing = [c for c in [self.data_key, *wanted] if c not in header]
        if missing:
            raise ConfigError(f"{self}: {str(self.path)!r} has no column(s) {missing} (its header: "
                              f"{header}). Add them, or set data_key=/columns= to the names used.")
        at = {c: header.index(c) for c in header}
        files, values = [], {c: [] for c in wanted}
        for line, row in enumerate(body, start=2):
            if len(row) != len(header):
                raise ConfigError(f"{self}: {str(self.path)!r} line {line} has {len(row)} fields, "
                                  f"the header {len(header)}. Fix that row.")
            file = Path(row[at[self.data_key]])
            file = file if file.is_absolute() else self.path.parent / file
            if not file.is_file():
                raise ConfigError(f"{self}: {str(self.path)!r} line {line}: image {str(file)!r} "
                                  "does not exist (paths are relative to the CSV's folder). Fix "
                                  "the path or remove the row.")
            files.append(str(file))
            for c in wanted:
                values[c].append(row[at[c]])
        columns = {}
        for c, raw in values.items():
            try:
                columns[c] = np.asarray([int(v) for v in raw], np.int64)
            except ValueError:
                try:
                    columns[c] = np.asarray([float(v) for v in raw], np.float32)
                except ValueError:
                    bad = next(v for v in raw if not _is_number(v))
                    raise ConfigError(f"{self}: column {c!r} of {str(self.path)!r} holds "
                                      f"{bad!r}, not a number. Map it to numbers (e.g. class "
                                      "indices) or leave it out with columns=[...].") from None
        return files, columns


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
