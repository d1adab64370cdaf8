"""`bhbench data download`: fetch BreaKHis_v1 from its authors' site, resumably, and unpack it safely.

The archive is written to `<name>.part` and renamed when whole; a rerun asks the server for the
rest (an HTTP Range request) instead of starting again. Extraction goes to a temporary folder
beside the target, member by member after checking each (no absolute or `..` paths, no links,
no devices), and is renamed into place only when the whole archive has been read to its end: a
truncated or corrupted archive leaves nothing that looks like a dataset.
"""

from __future__ import annotations

import gzip
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from bhbench.data import breakhis
from bhbench.data.index import resolve_root
from bhbench.data.names import parse_name
from bhbench.data.sources import FOLD_FILES
from bhbench.errors import DataError, UserError

# The authors' published archive (web.inf.ufpr.br/vri, the BreaKHis page links it).
DEFAULT_URL = "http://www.inf.ufpr.br/vri/databases/BreaKHis_v1.tar.gz"
URL_ENV = "BHBENCH_BREAKHIS_URL"  # a mirror, for every download
TOP = "BreaKHis_v1"
# Used for the disk check when the server does not say how long the archive is ("about 4 GB").
ARCHIVE_BYTES = 4 * 10**9
MB = 10**6
CHUNK = 1 << 20
TIMEOUT = 60  # seconds without a byte before a transfer counts as interrupted
# Python's own extraction filter (3.12, and backported to 3.8.17+/3.11.4+) on top of our checks.
_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}

Bar = Callable[[str, int | None], AbstractContextManager[Callable[[int], None]]]


@contextmanager
def _no_bar(label: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


def source_url(url: str | None = None) -> str:
    return url or os.environ.get(URL_ENV) or DEFAULT_URL


class Transfer:
    """One GET of `url` into `part`, asking only for what `part` does not hold yet."""

    def __init__(self, url: str, part: Path):
        self.url, self.part = url, part
        self.have = part.stat().st_size if part.exists() else 0
        self.total: int | None = None
        self.response: http.client.HTTPResponse | None = None
        headers = {"User-Agent": "bhbench (BreaKHis download)"}
        if self.have:
            headers["Range"] = f"bytes={self.have}-"
        try:
            self.response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and self.have:  # nothing lies beyond what we hold: the part is whole
                self.total = self.have
                return
            raise UserError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise UserError(f"{url}: cannot connect ({reason}); give a mirror with --url or ${URL_ENV}") from None
        length = self.response.headers.get("Content-Length")
        if self.have and self.response.status != 206:  # the server ignores ranges: start again
            self.have = 0
        if self.response.status == 206:
            start = self.response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if start != str(self.have):
                self.close()
                raise UserError(f"{url}: the server resumed at byte {start or '?'}, not {self.have}; delete {part}")
        self.total = self.have + int(length) if length else None

    def close(self) -> None:
        if self.response is not None:
            self.response.close()

    def run(self, progress: Callable[[int], None]) -> None:
        """Append the rest to `part`; an interrupted transfer keeps what arrived for the next run."""
        if self.response is None:
            return
        done = self.have
        try:
            with open(self.part, "ab" if self.have else "wb") as fh:
                while True:
                    try:
                        chunk = self.response.read(CHUNK)
                    except (OSError, http.client.HTTPException):
                        break
                    if not chunk:
                        break
                    fh.write(chunk)
                    done += len(chunk)
                    progress(len(chunk))
        finally:
            self.close()
        if self.total is not None and done < self.total:
            raise UserError(
                f"download of {self.url} interrupted after {done / MB:,.0f} of {self.total / MB:,.0f} MB "
                f"(kept in {self.part}); run the same command again to resume"
            )


def _in_mb(bump: Callable[[int], None]) -> Callable[[int], None]:
    """Bytes in, whole megabytes out (the progress bar counts MB)."""
    pending = 0

    def add(n: int) -> None:
        nonlocal pending
        whole, pending = divmod(pending + n, MB)
        if whole:
            bump(whole)

    return add


def _check_space(folder: Path, need: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < need:
        raise UserError(
            f"{folder}: {free / 10**9:.1f} GB free, the download and its extraction need about "
            f"{need / 10**9:.1f} GB; free some space or choose another folder with --to"
        )


def _refusal(member: tarfile.TarInfo, into: Path) -> str | None:
    """Why `member` may not be extracted into `into`, or None."""
    if member.issym() or member.islnk():
        return f"member {member.name!r} is a link"
    if not (member.isfile() or member.isdir()):
        return f"member {member.name!r} is a device or special file"
    target = (into / member.name).resolve()
    if os.path.isabs(member.name) or not target.is_relative_to(into.resolve()):
        return f"member {member.name!r} would land outside the target folder"
    return None


def _unpack(archive: Path, into: Path, progress: Callable[[int], None]) -> None:
    """Extract a .tar.gz (or plain .tar) into `into`, reading it to the very end."""
    corrupt = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)
    with open(archive, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if magic == b"\x1f\x8b" else raw
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    reason = _refusal(member, into)
                    if reason:
                        raise DataError(f"{archive}: refused, {reason}; nothing extracted")
                    tar.extract(member, into, **_FILTER)
                    progress(1)
            # tarfile stops quietly at a damaged header; what follows the end of a whole archive is
            # zero padding, and reading gzip to its end checks its CRC and length.
            while chunk := stream.read(CHUNK):
                if chunk.strip(b"\0"):
                    raise tarfile.ReadError("data after the point where the archive stops being readable")
        except getattr(tarfile, "FilterError", ()) as exc:
            raise DataError(f"{archive}: refused, {exc}; nothing extracted") from None
        except corrupt as exc:
            raise DataError(
                f"{archive}: corrupt or truncated archive ({exc}); nothing extracted, the next run downloads it again"
            ) from None


def extract(archive: Path, dest: Path, progress: Callable[[int], None] = lambda n: None) -> None:
    """Unpack `archive` so that its BreaKHis_v1 folder becomes `dest`, or leave `dest` untouched."""
    scratch = Path(tempfile.mkdtemp(prefix=".partial-", dir=dest.parent))
    try:
        _unpack(archive, scratch, progress)
        try:
            root = resolve_root(scratch)
        except DataError:
            root = scratch
        if root.name != "histology_slides" or not any(root.rglob("*.png")):
            raise DataError(f"{archive}: holds no BreaKHis_v1/histology_slides tree of PNG images")
        root.parent.rename(dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def name_table(root: Path) -> tuple[pd.DataFrame, list[str]]:
    """Index columns parsed from file names alone (no image is read), and the names that do not parse."""
    rows, odd = [], []
    for path in root.rglob("*.png"):
        try:
            name = parse_name(path.name)
        except ValueError:
            odd.append(path.name)
            continue
        rows.append((name.tumor_class, name.subtype, name.patient, name.magnification))
    return pd.DataFrame(rows, columns=["tumor_class", "subtype", "patient", "magnification"]), odd


def find_folds(top: Path) -> Path | None:
    """A folder below `top` holding official fold files, if the archive shipped any."""
    for name in FOLD_FILES:
        found = next(top.rglob(name), None)
        if found is not None:
            return found.parent
    return None


@dataclass
class Fetched:
    data: Path  # the BreaKHis_v1 folder
    folds: Path | None
    images: int
    differences: list[str] = field(default_factory=list)  # counts unlike the complete BreaKHis_v1
    already: bool = False  # it was there before this run


def fetch(to: Path, url: str | None = None, bar: Bar = _no_bar, keep_archive: bool = False) -> Fetched:
    """Download (or resume) and extract BreaKHis_v1 into `to/BreaKHis_v1`."""
    to = Path(to).expanduser().resolve()
    to.mkdir(parents=True, exist_ok=True)
    dest = to / TOP
    already = dest.exists()
    if already and not (dest / "histology_slides").is_dir():
        raise UserError(f"{dest} exists but holds no histology_slides folder; move it away or choose --to")
    if not already:
        url = source_url(url)
        archive = to / (Path(urlparse(url).path).name or f"{TOP}.tar.gz")
        if archive.exists():
            _check_space(to, archive.stat().st_size)
        else:
            part = archive.with_name(archive.name + ".part")
            transfer = Transfer(url, part)
            total = transfer.total or ARCHIVE_BYTES
            try:
                _check_space(to, total - transfer.have + total)  # the rest of the archive, then its contents
            except UserError:
                transfer.close()
                raise
            with bar("downloading BreaKHis_v1 (MB)", -(-total // MB)) as bump:
                counted = _in_mb(bump)
                counted(transfer.have)  # the bar starts where the last run stopped
                transfer.run(counted)
            part.rename(archive)
        try:
            with bar("extracting files", None) as bump:
                extract(archive, dest, bump)
        except DataError as exc:
            archive.unlink()  # a bad copy: the next run fetches it again
            raise DataError(f"{exc} (archive removed)") from None
        if not keep_archive:
            archive.unlink()
    table, odd = name_table(dest)
    differences = breakhis.differences(table)
    if odd:
        differences.append(f"{len(odd):,} PNG file(s) whose names are not BreaKHis names, e.g. {odd[0]}")
    return Fetched(dest, find_folds(dest), len(table) + len(odd), differences, already)
