"""The one reader of lead exports, used by every path that reads one (``validate``,
``score``, the production run, ``retrain`` and the dask engine).

A CSV export (the configured separator and encoding; gzip/bz2/zstd compression detected
from the file name; a UTF-8 byte-order mark tolerated; quoted values may hold the
separator or line breaks) or a parquet file is streamed with pyarrow in chunks of text
columns, so ids stay strings byte for byte and nothing is guessed. A chunk's index is the
0-based record number in the file. Messages name the file's real line numbers: when a
message needs them, the file is read again with Python's ``csv`` module (errors are rare
and files large, so this costs nothing on the normal path). A record must fit in the
reader's block (:data:`BLOCK_SIZE`); a longer one (usually a quote left open, which makes
the rest of the file one value) is reported with its line. A truncated or corrupt
compressed file is reported with the last line that could be read.

"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from leadscoring.config import ProjectConfig
from leadscoring.errors import LeadDataError, first_line

PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})


DEFAULT_CHUNK_ROWS = 100_000

#: Bytes of CSV pyarrow parses at a time: a record longer than this may not be read (pyarrow
#: refuses a record straddling two block boundaries), and is reported with its line.
BLOCK_SIZE = 1 << 22

#: File name endings pyarrow decompresses on the fly (``compression="detect"``).
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".lz4", ".zst")


#: Record numbers → labels for messages ("line 7"); see :class:`LineLocator`.
RowLocator = Callable[[Sequence[int]], list[str]]


def is_parquet(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in PARQUET_SUFFIXES


def _python_encoding(encoding: str) -> str:
    """Python codec for reading text: UTF-8 files may start with a byte-order mark."""
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


@contextlib.contextmanager
def _open_text(path: Path, encoding: str) -> Iterator[TextIO]:
    import pyarrow as pa

    stream = pa.input_stream(str(path), compression="detect")
    with io.TextIOWrapper(stream, encoding=_python_encoding(encoding), newline="") as fh:
        yield fh


def _size(n: int) -> str:
    """A byte count for messages: "4 MB", "64 KB"."""
    return f"{n / 2**20:g} MB" if n >= 2**20 else f"{n / 2**10:g} KB"


class _Records:
    """Iterates (first line, fields) of every record of a CSV export after the header, blank
    lines skipped as pyarrow skips them. ``line`` is the first line of the record being read,
    so after an error it names the record that failed."""

    def __init__(self, path: Path, cfg: ProjectConfig) -> None:
        self.path, self.cfg = path, cfg
        self.line = 2

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        if csv.field_size_limit() < BLOCK_SIZE:  # accept every value pyarrow accepts (default: 128 KB)
            csv.field_size_limit(BLOCK_SIZE)
        with _open_text(self.path, self.cfg.data.encoding) as fh:
            reader = csv.reader(fh, delimiter=self.cfg.data.separator)
            next(reader, None)
            self.line = reader.line_num + 1
            for row in reader:
                if row:
                    yield self.line, row
                self.line = reader.line_num + 1


def _records(path: Path, cfg: ProjectConfig) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of every record after the header (see :class:`_Records`)."""
    return iter(_Records(path, cfg))


class LineLocator:
    """Record numbers → "line N" labels of a CSV file (computed on demand). The scan goes on
    from where the last call stopped when the records asked for come later in the file (the
    chunks of a job, in order), else it starts again from the top. A copy sent to a worker
    process starts its own scan."""

    def __init__(self, path: Path, cfg: ProjectConfig) -> None:
        self.path, self.cfg = path, cfg
        self._scan: Iterator[tuple[int, list[str]]] | None = None
        self._next = 0  # the record number the scan reads next

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "cfg": self.cfg}  # an open scan stays in this process

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["cfg"])  # type: ignore[misc]

    def __call__(self, records: Sequence[int]) -> list[str]:
        wanted = {int(r) for r in records}
        found: dict[int, int] = {}
        if wanted:
            if self._scan is None or min(wanted) < self._next:
                self._scan, self._next = _records(self.path, self.cfg), 0
            for line, _ in self._scan:
                i, self._next = self._next, self._next + 1
                if i in wanted:
                    found[i] = line
                    if len(found) == len(wanted):
                        break
        return [f"line {found[int(r)]}" if int(r) in found else f"record {int(r) + 1}" for r in records]


def row_locator(path: str | os.PathLike[str], cfg: ProjectConfig) -> RowLocator:
    """How to name a record of ``path`` in a message: its line (CSV) or its row (parquet)."""
    path = Path(path)
    if is_parquet(path):
        return parquet_rows  # (a module function: worker processes receive it)
    return LineLocator(path, cfg)


def parquet_rows(records: Sequence[int]) -> list[str]:
    """Record numbers of a parquet file → "row N" labels (from 1)."""
    return [f"row {int(r) + 1}" for r in records]


def not_readable(path: Path, encoding: str, detail: str) -> LeadDataError:
    """The one-line message for an export that is not text in the configured encoding; for a
    UTF-8 project, which setting reads a Windows export."""
    hint = (
        "; an export saved on Windows is often cp1252: set data.encoding: cp1252" if codecs.lookup(encoding).name == "utf-8" else ""
    )
    return LeadDataError(f"{path.name}: not readable as {encoding} ({detail}){hint}")


def read_header(path: Path, cfg: ProjectConfig) -> list[str]:
    """The column names of a CSV export, with one-line errors for an unreadable, empty or
    wrongly separated file."""
    d = cfg.data
    try:
        with _open_text(path, d.encoding) as fh:
            row = next(csv.reader(fh, delimiter=d.separator), None)
    except UnicodeDecodeError as exc:
        raise not_readable(path, d.encoding, f"{exc.reason} at byte {exc.start}") from None
    except (OSError, EOFError) as exc:
        raise LeadDataError(f"{path.name}: cannot be read ({exc})") from None
    except csv.Error as exc:
        raise LeadDataError(f"{path.name}: malformed header ({exc})") from None
    names = [c.strip() for c in row or []]
    if not any(names):
        raise LeadDataError(f"{path.name}: the file is empty (no header, no leads)")
    if len(names) == 1 and len(d.columns.all) > 1:
        raise LeadDataError(f"{path.name}: only one column found ({names[0][:60]!r}); is the separator really {d.separator!r}?")
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise LeadDataError(f"{path.name}: column(s) {dupes} appear more than once in the header")
    return names


def _malformed(path: Path, cfg: ProjectConfig, n_columns: int, exc: Exception) -> LeadDataError:
    """The one-line message for a CSV pyarrow could not parse: the first record whose
    field count differs from the header's, with its line, else pyarrow's own words."""
    with contextlib.suppress(csv.Error, UnicodeDecodeError, OSError):
        for line, row in _records(path, cfg):
            if len(row) != n_columns:
                return LeadDataError(
                    f"{path.name}: line {line} has {len(row)} field(s) but the header has {n_columns} "
                    f"(separator {cfg.data.separator!r}; a value holding it must be quoted)"
                )
    first = first_line(exc)
    if "UTF8" in first or "decode" in first.lower():
        return not_readable(path, cfg.data.encoding, first)
    return LeadDataError(f"{path.name}: malformed CSV ({first})")


def _line_start(path: Path, cfg: ProjectConfig, line: int, width: int = 40) -> str:
    """The first ``width`` characters of physical line ``line`` (without reading a long line whole)."""
    with contextlib.suppress(OSError, EOFError, UnicodeDecodeError), _open_text(path, cfg.data.encoding) as fh:
        for _ in range(line - 1):
            if not fh.readline():
                return ""
        return fh.readline(width).rstrip("\r\n")
    return ""


def _oversized(path: Path, cfg: ProjectConfig, names: Sequence[str]) -> LeadDataError:
    """The one-line message for a record pyarrow refused as longer than its block: the first
    record longer than the block, with its line, its longest field and how the line starts."""
    records = _Records(path, cfg)
    encoding, sep = _python_encoding(cfg.data.encoding), cfg.data.separator
    found: tuple[int, str] | None = None  # (line, what is too long)
    try:
        for line, row in records:
            if sum(map(len, row)) * 4 > BLOCK_SIZE and len(sep.join(row).encode(encoding, "replace")) > BLOCK_SIZE:
                longest = max(range(len(row)), key=lambda i: len(row[i]))
                found = (line, f"field '{names[longest]}'" if longest < len(names) else f"field {longest + 1}")
                break
    except csv.Error:  # one value longer than the block (the csv module's field limit, see _Records)
        found = (records.line, "a value")
    except (UnicodeDecodeError, OSError, EOFError):
        pass
    block = _size(BLOCK_SIZE)
    if found is None:
        return LeadDataError(f"{path.name}: a record is longer than the reader's block ({block}); is a quote left open?")
    line, what = found
    return LeadDataError(
        f"{path.name}: line {line}: {what} longer than the reader's block ({block}); the line starts "
        f"{_line_start(path, cfg, line)!r}: is a quote left open (the rest of the file then reads as one value)?"
    )


def _unreadable(path: Path, cfg: ProjectConfig, exc: OSError) -> LeadDataError:
    """The one-line message for a CSV export that breaks off while being read (a truncated or
    corrupt compressed file, an I/O error), with the last line that could be read."""
    records = _Records(path, cfg)
    where = ""
    try:
        for _ in records:
            pass
    except (OSError, EOFError, csv.Error, UnicodeDecodeError):
        where = f"; readable only up to line {records.line - 1}"
    if str(path).endswith(COMPRESSED_SUFFIXES):
        return LeadDataError(
            f"{path.name}: truncated or corrupt compressed file ({first_line(exc)}){where}; copy or export it again"
        )
    return LeadDataError(f"{path.name}: cannot be read ({first_line(exc)}){where}")


def _batches(path: Path, cfg: ProjectConfig, chunk_rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if is_parquet(path):
        try:
            parquet = pq.ParquetFile(path)
            d = cfg.data
            used = {d.id_column, d.target_column, d.date_column, *d.columns.all}
            nested = [f for f in parquet.schema_arrow if pa.types.is_nested(f.type) and f.name in used]
            if nested:  # a lead's field is one value: a list, struct or map column is no lead column (others are extras)
                f = nested[0]
                raise LeadDataError(
                    f"{path.name}: column '{f.name}' holds {f.type} values, not one value per lead; "
                    "flatten it into columns of single values"
                )
            reader = parquet.iter_batches(batch_size=chunk_rows)
            for batch in reader:
                yield batch.to_pandas()
        except (pa.ArrowException, OSError) as exc:
            raise LeadDataError(f"{path.name}: cannot read as parquet ({exc})") from None
        return
    d = cfg.data
    names = read_header(path, cfg)
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE, encoding=d.encoding, column_names=names, skip_rows=1),
            parse_options=pacsv.ParseOptions(delimiter=d.separator, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
        for batch in reader:
            yield batch.to_pandas()
    except pa.ArrowInvalid as exc:
        if "straddl" in str(exc):  # "straddling object straddles two block boundaries"
            raise _oversized(path, cfg, names) from None
        raise _malformed(path, cfg, len(names), exc) from None
    except UnicodeDecodeError as exc:
        raise _malformed(path, cfg, len(names), exc) from None
    except OSError as exc:  # e.g. "Truncated compressed stream" (pyarrow's ArrowIOError is OSError)
        raise _unreadable(path, cfg, exc) from None


def iter_raw_chunks(
    path: str | os.PathLike[str], cfg: ProjectConfig, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """The export as chunks of at most ``chunk_rows`` records, every CSV column as text;
    each chunk's index is the 0-based record number in the file."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    path = Path(path)
    if not path.is_file():
        raise LeadDataError(f"{path}: file not found" + (" (it is a folder)" if path.is_dir() else ""))
    offset = 0
    pending: list[pd.DataFrame] = []
    size = 0
    for df in _batches(path, cfg, chunk_rows):
        pending.append(df)
        size += len(df)
        while size >= chunk_rows:
            whole = pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]
            chunk, rest = whole.iloc[:chunk_rows], whole.iloc[chunk_rows:]
            chunk.index = pd.RangeIndex(offset, offset + len(chunk))
            offset += len(chunk)
            yield chunk
            pending, size = ([rest] if len(rest) else []), len(rest)
    if pending:
        chunk = pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]
        chunk.index = pd.RangeIndex(offset, offset + len(chunk))
        yield chunk
    elif offset == 0:
        raise LeadDataError(f"{path.name}: no leads (the file has a header but no rows)")


def read_raw(path: str | os.PathLike[str], cfg: ProjectConfig) -> pd.DataFrame:
    """The whole export as one frame of text columns (index: record number)."""
    chunks = list(iter_raw_chunks(path, cfg))
    return chunks[0] if len(chunks) == 1 else pd.concat(chunks)
