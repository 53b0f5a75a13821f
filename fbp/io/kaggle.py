"""The Kaggle layout and the files around it: ``train.csv`` + ``train/ID.txt``, folders of essay texts,
and span files (submissions, ``train.csv``, ``spans.parquet``) read as ``DataFrame[id, class, predictionstring]``.

This module is the only one that opens these files; validation of their content is :mod:`fbp.preprocess`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import FbpError

class NotARegularFile(FbpError):
    """An essay path that is a folder, a named pipe, a device or a dangling link: never opened for reading."""


def read_regular_file(path: Path) -> bytes:
    """The bytes of ``path`` if it is a regular file (a link to one is fine). A named pipe or device is never read
    (it would block forever or never end): it is opened without blocking and refused once seen not to be a file."""
    import stat

    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        if os.path.lexists(path):
            raise NotARegularFile(f"{path} is a dangling symbolic link") from None
        raise
    except IsADirectoryError:
        raise NotARegularFile(f"{path} is a directory, not an essay file") from None
    except PermissionError:
        raise FbpError(f"{path}: permission denied (cannot read the essay)") from None
    try:
        mode = os.fstat(handle).st_mode
        if not stat.S_ISREG(mode):
            kind = "directory" if stat.S_ISDIR(mode) else "named pipe" if stat.S_ISFIFO(mode) else "device or socket"
            raise NotARegularFile(f"{path} is a {kind}, not an essay file")
        with os.fdopen(handle, "rb", closefd=True) as file:
            handle = None
            return file.read()
    except OSError as error:
        raise FbpError(f"{path}: cannot read the essay ({error.strerror or error})") from None
    finally:
        if handle is not None:
            os.close(handle)


MAX_ID_BYTES = 200  # an id is a file name (ID.txt, ID.html): well within the 255 bytes of most filesystems


def bad_essay_id(essay_id: str) -> Optional[str]:
    """Why ``essay_id`` cannot be an essay's name (it becomes the file name ID.txt), or None when it can: essay ids
    are names, never paths."""
    if "/" in essay_id or "\\" in essay_id:
        return "has a path separator"
    if "\0" in essay_id:
        return "has a NUL byte"
    if essay_id in (".", "..") or essay_id.startswith(".."):
        return "is a relative path"
    if any(ord(character) < 32 for character in essay_id):
        return "has a control character"
    if len(essay_id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        return f"is longer than {MAX_ID_BYTES} bytes"
    return None


REQUIRED_COLUMNS = ("id", "discourse_start", "discourse_end", "discourse_type", "predictionstring")
SPAN_COLUMNS = ["id", "class", "predictionstring"]


def read_table(data_dir: Path) -> "pd.DataFrame":  # noqa: F821
    """The columns fbp needs from ``DATA_DIR/train.csv``, as strings, plus ``row`` (its row number in the file).

    FbpError if the file is missing, unreadable, empty or short of columns.
    """
    import pandas as pd

    csv_path = data_dir / "train.csv"
    if not data_dir.is_dir():
        raise FbpError(f"{data_dir}: no such directory (expected the Kaggle layout: train.csv and train/*.txt)")
    if csv_path.is_dir():
        raise FbpError(f"{csv_path} is a directory, not a file (expected the Kaggle layout: train.csv and train/*.txt)")
    if not csv_path.is_file():
        raise FbpError(f"{csv_path}: not found (expected the Kaggle layout: train.csv and train/*.txt)")
    try:
        header = pd.read_csv(csv_path, nrows=0).columns
        missing = [column for column in REQUIRED_COLUMNS if column not in header]
        if missing:
            raise FbpError(f"{csv_path}: missing column(s) {', '.join(missing)} (has: {', '.join(header) or 'none'})")
        # Strings everywhere, so that bad values are reported by us rather than mis-parsed.
        table = pd.read_csv(csv_path, usecols=list(REQUIRED_COLUMNS), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise FbpError(f"{csv_path}: not a readable CSV file ({str(error).strip()})") from error
    if table.empty:
        raise FbpError(f"{csv_path}: the table has no rows")
    table["row"] = np.arange(1, len(table) + 1)  # kept through filtering, for messages
    for row, essay_id in zip(table["row"], table["id"]):
        problem = bad_essay_id(essay_id)
        if problem:
            shown = essay_id if len(essay_id) <= 60 else essay_id[:57] + "..."
            raise FbpError(f"{csv_path}, row {row}: essay id {shown!r} {problem}; an id names a file in train/, never a path")
    return table


def read_texts(text_dir: Path, essay_ids: Sequence[str]) -> Tuple[List[Optional[str]], List[str], List[str]]:
    """The text of each essay ``TEXT_DIR/ID.txt`` (None when its file is missing or not UTF-8), the ids whose
    file is missing, and the files that are not UTF-8 (``NAME.txt (byte N)``)."""
    texts: List[Optional[str]] = []
    missing: List[str] = []
    not_utf8: List[str] = []
    for essay_id in essay_ids:
        path = text_dir / f"{essay_id}.txt"
        try:
            # Bytes, then decode: text mode would turn \r\n into \n and shift every character offset.
            texts.append(read_regular_file(path).decode("utf-8"))
        except FileNotFoundError:
            missing.append(essay_id)
            texts.append(None)
        except UnicodeDecodeError as error:
            not_utf8.append(f"{path.name} (byte {error.start})")
            texts.append(None)
    return texts, missing, not_utf8


def unlisted_text_files(text_dir: Path, known_ids: Iterable[str]) -> int:
    """How many ``*.txt`` files of ``text_dir`` have no id in ``known_ids``."""
    known = set(known_ids)
    return sum(1 for entry in os.scandir(text_dir) if entry.name.endswith(".txt") and entry.name[:-4] not in known)


@dataclass
class EssayDir:
    """The ``*.txt`` essays of a directory, checked up front (UTF-8) and read again on demand.

    An empty essay (no word) is valid input with no elements: it is kept, with 0 words, and listed in ``empty``.
    """

    directory: Path
    ids: List[str]
    n_words: List[int]
    empty: List[str] = field(default_factory=list)  # ids of the essays without a single word
    skipped: List[str] = field(default_factory=list)  # *.txt names that are not regular files (folders, pipes, dangling links)

    @classmethod
    def scan(cls, directory: Path) -> "EssayDir":
        directory = Path(directory)
        if not directory.is_dir():
            raise FbpError(f"text directory {directory} does not exist" if not directory.exists() else f"{directory} is not a directory")
        paths = sorted(directory.glob("*.txt"))
        # Only regular files are essays: a folder, named pipe or dangling link called x.txt is skipped with a
        # warning (a pipe would block forever), never opened.
        skipped = [path for path in paths if not path.is_file()]
        paths = [path for path in paths if path.is_file()]
        if not paths:
            extra = f" (skipped {len(skipped)} that are not regular files, e.g. {skipped[0].name})" if skipped else ""
            raise FbpError(f"{directory} has no *.txt essays{extra}")
        n_words = [len(_read_essay(path).split()) for path in paths]
        ids = [path.stem for path in paths]
        return cls(directory, ids, n_words, [essay_id for essay_id, count in zip(ids, n_words) if count == 0],
                   [path.name for path in skipped])

    def texts(self) -> Iterator[str]:
        """The essays' texts in ``ids`` order, read one at a time."""
        return (_read_essay(self.directory / f"{essay_id}.txt") for essay_id in self.ids)

    # Iterating yields the texts; the length lets a progress bar show a total while essays stream.
    __iter__ = texts

    def __len__(self) -> int:
        return len(self.ids)


def _read_essay(path: Path) -> str:
    try:
        text = read_regular_file(path).decode("utf-8")
    except UnicodeDecodeError as error:
        raise FbpError(f"essay {path.name} is not valid UTF-8 (byte {error.start})") from None
    return text


def read_span_file(path: Path, role: str, skip_blank: bool = False) -> Tuple["pd.DataFrame", "SpanSet"]:  # noqa: F821
    """Spans from a CSV (submission, or Kaggle ``train.csv`` whose ``discourse_type`` is the class) or a
    ``spans.parquet``: the ``DataFrame[id, class, predictionstring]`` and its parsed :class:`SpanSet`.
    Bad rows raise FbpError naming the file and line. ``skip_blank`` leaves out rows with neither class
    nor predictionstring (an essay with no span, as in Kaggle's ``sample_submission.csv``)."""
    import pandas as pd

    from ..metric import parse_spans

    path = Path(path)
    if not path.exists():
        raise FbpError(f"{role} file not found: {path}")
    if path.is_dir():
        raise FbpError(f"{role} {path} is a directory, expected a CSV file")
    if path.suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as error:
            raise FbpError(f"cannot read {role} file {path}: {error}") from None
        first_line = None
    else:
        frame = _read_csv(path, role)
        first_line = 2  # line 1 is the header
    frame = frame.rename(columns={"discourse_type": "class"}) if "class" not in frame.columns else frame
    missing = [column for column in SPAN_COLUMNS if column not in frame.columns]
    if missing:
        raise FbpError(
            f"{path}: missing column(s) {', '.join(missing)} (a {role} file needs id, class or discourse_type, predictionstring; "
            f"found {', '.join(map(str, frame.columns)) or 'no columns'})"
        )
    frame = frame[SPAN_COLUMNS]
    spans = parse_spans(frame, str(path), first_line, skip_blank=skip_blank)  # on all rows, so errors name the right line
    if skip_blank:
        frame = frame[~(frame["class"].isna() & frame["predictionstring"].isna())]
    return frame, spans


def _read_csv(path: Path, role: str) -> "pd.DataFrame":  # noqa: F821
    import pandas as pd

    try:
        header = pd.read_csv(path, nrows=0, keep_default_na=False).columns
        wanted = [column for column in header if column in ("id", "class", "discourse_type", "predictionstring")]
        # Only an empty cell is missing: ids such as "NA" or "null" are names (pandas would read them as missing).
        strings = {"keep_default_na": False, "na_values": [""]}
        frame = pd.read_csv(path, usecols=wanted, **strings)  # only the needed columns (train.csv also holds the essay texts)
        if not all(pd.api.types.is_string_dtype(frame[column]) for column in wanted):
            # A column read as numbers (e.g. every predictionstring one word): read it again as text,
            # which is several times slower, so only when needed.
            frame = pd.read_csv(path, usecols=wanted, dtype=str, **strings)
        return frame
    except pd.errors.EmptyDataError:
        raise FbpError(f"{role} file {path} is empty (expected a header id,class,predictionstring)") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise FbpError(f"cannot read {role} file {path}: {str(error).strip()}") from None


KAGGLE_COLUMNS = ("id", "discourse_id", "discourse_start", "discourse_end", "discourse_text", "discourse_type",
                  "discourse_type_num", "predictionstring")


def write_kaggle_layout(
    output_dir: Path,
    rows: Sequence[Sequence[object]],
    train_texts: Sequence[Tuple[str, str]],
    test_texts: Sequence[Tuple[str, str]],
    marker: Tuple[str, str],
) -> None:
    """Write a corpus in the Kaggle layout, atomically: ``train.csv`` (``rows`` in :data:`KAGGLE_COLUMNS` order),
    ``train/ID.txt``, ``test/ID.txt``, ``sample_submission.csv`` and ``marker`` (name, JSON text).

    An existing ``output_dir`` is replaced only when it holds the same marker file (an earlier corpus of this
    writer), never a user's folder.
    """
    import csv
    import io

    from ..atomic import write_dir_atomically

    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(KAGGLE_COLUMNS)
    writer.writerows(rows)
    marker_name, marker_text = marker

    def write(directory: Path) -> None:
        for folder, essays in (("train", train_texts), ("test", test_texts)):
            (directory / folder).mkdir()
            for essay_id, text in essays:
                # newline="": the texts' own line ends are kept, so character offsets stay exact.
                (directory / folder / f"{essay_id}.txt").write_text(text, encoding="utf-8", newline="")
        (directory / "train.csv").write_text(table.getvalue(), encoding="utf-8", newline="")
        (directory / "sample_submission.csv").write_text(
            "id,class,predictionstring\n" + "".join(f"{essay_id},,\n" for essay_id, _ in test_texts), encoding="utf-8"
        )
        (directory / marker_name).write_text(marker_text, encoding="utf-8")

    write_dir_atomically(Path(output_dir), write, replaceable=lambda directory: (directory / marker_name).is_file())
