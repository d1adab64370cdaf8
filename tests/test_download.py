"""`bhbench data download` against a fabricated archive served on 127.0.0.1, and the published counts
that `bhbench data check` compares a tree with."""

from __future__ import annotations

import io
import tarfile
import threading
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from conftest import FOLDS, MINI, needs_real

from bhbench.cli import main
from bhbench.data import breakhis, download
from bhbench.data.index import index_tree
from bhbench.data.names import BENIGN_SUBTYPES, parse_name
from bhbench.splits import read_official

ARCHIVE = "/BreaKHis_v1.tar.gz"


def _tar_gz(add) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        add(tar)
    return buf.getvalue()


@pytest.fixture(scope="module")
def tree_archive(tiny_tree: Path) -> tuple[bytes, dict[str, bytes]]:
    """The tiny generated tree packed as the authors pack BreaKHis_v1 (without the synthetic marker),
    and its PNG files by archive path."""
    files = {f"BreaKHis_v1/{p.relative_to(tiny_tree).as_posix()}": p.read_bytes() for p in tiny_tree.rglob("*.png")}

    def add(tar: tarfile.TarFile) -> None:
        tar.add(tiny_tree / "histology_slides", arcname="BreaKHis_v1/histology_slides")

    return _tar_gz(add), files


class Server(ThreadingHTTPServer):
    """Serves byte strings by path; honours Range; cuts the first answer for paths in `cut` midway."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.log: list[tuple[str, str | None, int]] = []  # path, Range header, body bytes sent

    def url(self, path: str = ARCHIVE) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class Handler(BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        asked = self.headers.get("Range")
        start = int(asked.removeprefix("bytes=").rstrip("-")) if asked else 0
        if start >= len(body):
            self.send_error(416)
            return
        self.send_response(206 if asked else 200)
        if asked:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = self.path in self.server.cut and not any(p == self.path for p, _, _ in self.server.log)
        sent = body[start : len(body) // 2] if cut else body[start:]
        self.wfile.write(sent)
        self.wfile.flush()
        self.server.log.append((self.path, asked, len(sent)))
        self.close_connection = True  # with `cut`, the client sees the connection drop midway

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_interrupted_download_resumes_where_it_stopped(server, tree_archive, tmp_path, monkeypatch, capsys):
    blob, files = tree_archive
    server.files[ARCHIVE] = blob
    server.cut.add(ARCHIVE)
    to = tmp_path / "data"

    assert main(["data", "download", "--to", str(to), "--url", server.url()]) == 2
    err = capsys.readouterr().err
    assert "run the same command again to resume" in err and "Traceback" not in err
    half = len(blob) // 2
    assert (to / "BreaKHis_v1.tar.gz.part").stat().st_size == half
    assert not (to / "BreaKHis_v1").exists()

    monkeypatch.setenv(download.URL_ENV, server.url())  # the mirror variable instead of --url
    assert main(["data", "download", "--to", str(to)]) == 0
    out, err = capsys.readouterr()
    (_, first_range, first), (_, second_range, second) = server.log
    assert first_range is None and second_range == f"bytes={half}-"
    assert first + second == len(blob)  # the first half was not fetched again

    top = to / "BreaKHis_v1"
    extracted = {f"BreaKHis_v1/{p.relative_to(top).as_posix()}": p.read_bytes() for p in top.rglob("*.png")}
    assert extracted == files
    assert sorted(p.name for p in to.iterdir()) == ["BreaKHis_v1"]  # archive removed, no partial folder
    assert f"--data {top}" in out and f"export BHBENCH_DATA={top}" in out
    assert "not the complete BreaKHis_v1" in err and "images: 328 of 7,909" in err and "--folds FOLDER" in err
    assert index_tree(top).name == "breakhis" and not index_tree(top).problems

    assert main(["data", "download", "--to", str(to)]) == 0  # already there: nothing fetched
    assert "already in" in capsys.readouterr().err and len(server.log) == 2


def test_a_part_file_holding_everything_is_not_fetched_again(server, tree_archive, tmp_path, capsys):
    server.files[ARCHIVE] = tree_archive[0]
    to = tmp_path / "data"
    to.mkdir()
    (to / "BreaKHis_v1.tar.gz.part").write_bytes(tree_archive[0])  # cut just before the server said "done"
    assert main(["data", "download", "--to", str(to), "--url", server.url()]) == 0
    assert server.log == []  # answered 416 (nothing beyond what we hold) without a body
    assert sorted(p.name for p in to.iterdir()) == ["BreaKHis_v1"]


def test_disk_space_is_checked_before_anything_is_written(server, tree_archive, tmp_path, monkeypatch, capsys):
    server.files[ARCHIVE] = tree_archive[0]
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(download.shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 1000, 1000))
    to = tmp_path / "data"
    assert main(["data", "download", "--to", str(to), "--url", server.url()]) == 2
    (line,) = _errors(capsys.readouterr().err)
    assert "GB free" in line and "--to" in line
    assert list(to.iterdir()) == []


def _with_member(tiny_tree: Path, kind: str) -> bytes:
    def add(tar: tarfile.TarFile) -> None:
        png = next(tiny_tree.rglob("*.png"))
        tar.add(png, arcname=f"BreaKHis_v1/{png.relative_to(tiny_tree).as_posix()}")
        bad = tarfile.TarInfo({"escape": "../escape.png", "absolute": "/tmp/escape.png"}.get(kind, "BreaKHis_v1/x"))
        if kind == "symlink":
            bad.type, bad.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "device":
            bad.type = tarfile.CHRTYPE
        data = png.read_bytes() if bad.isfile() else b""
        bad.size = len(data)
        tar.addfile(bad, io.BytesIO(data))

    return _tar_gz(add)


@pytest.mark.parametrize("kind", ["escape", "absolute", "symlink", "device"])
def test_unsafe_member_is_refused_with_one_line_and_nothing_extracted(
    kind, server, tiny_tree, tmp_path, monkeypatch, capsys
):
    server.files[ARCHIVE] = _with_member(tiny_tree, kind)
    to = tmp_path / "data"
    assert main(["data", "download", "--to", str(to), "--url", server.url()]) == 2
    err = capsys.readouterr().err
    (line,) = _errors(err)
    assert "refused" in line and "nothing extracted" in line and "Traceback" not in err
    said = {"escape": "'../escape.png' would land outside", "absolute": "'/tmp/escape.png' would land outside"}
    assert {**said, "symlink": "is a link", "device": "is a device"}[kind] in line
    assert list(to.iterdir()) == [] and not (tmp_path / "escape.png").exists()


@pytest.mark.parametrize("damage", ["flipped bytes", "truncated"])
def test_corrupt_archive_leaves_no_tree_that_looks_valid(damage, server, tree_archive, tmp_path, capsys):
    blob = bytearray(tree_archive[0])
    if damage == "truncated":
        blob = blob[: len(blob) * 2 // 3]
    else:
        middle = len(blob) // 2
        blob[middle : middle + 64] = bytes(b ^ 0xFF for b in blob[middle : middle + 64])
    server.files[ARCHIVE] = bytes(blob)
    to = tmp_path / "data"
    assert main(["data", "download", "--to", str(to), "--url", server.url()]) == 2
    (line,) = _errors(capsys.readouterr().err)
    assert "corrupt or truncated" in line and "downloads it again" in line
    assert list(to.iterdir()) == []  # no tree, no partial folder, no bad archive to trip the next run
    assert main(["data", "check", "--data", str(to)]) == 2
    assert "not a BreaKHis tree" in capsys.readouterr().err


def _tree_table(patients: dict[str, list[str]]) -> pd.DataFrame:
    """An index table with exactly BreaKHis_v1's published counts, images spread over `patients`."""
    rows = []
    for subtype, per_mag in breakhis.IMAGES.items():
        cls = "B" if subtype in BENIGN_SUBTYPES else "M"
        for mag, n in zip(breakhis.MAGNIFICATIONS, per_mag, strict=True):
            rows += [(cls, subtype, patients[subtype][i % len(patients[subtype])], mag) for i in range(n)]
    return pd.DataFrame(rows, columns=["tumor_class", "subtype", "patient", "magnification"])


def test_published_counts_add_up_and_a_whole_tree_is_complete():
    want = breakhis.expected()
    assert want["images"] == 7909 and want["patients"] == 82 and want["patient tokens"] == 81
    assert (want["benign images"], want["malignant images"]) == (2480, 5429)
    # the authors' per-magnification totals
    assert [want[f"{m}X images"] for m in (40, 100, 200, 400)] == [1995, 2081, 2013, 1820]
    patients = {s: [f"14-{s}{i}" for i in range(n)] for s, n in breakhis.PATIENTS.items()}
    patients["LC"][0] = patients["DC"][0]  # like 14-13412: one token under two subtypes
    table = _tree_table(patients)
    assert breakhis.differences(table) == []
    # Two images change magnification: every total still agrees, four subtype x magnification cells do not.
    dc40 = table.index[(table["subtype"] == "DC") & (table["magnification"] == 40)][0]
    lc100 = table.index[(table["subtype"] == "LC") & (table["magnification"] == 100)][0]
    table.loc[dc40, "magnification"], table.loc[lc100, "magnification"] = 100, 40
    assert breakhis.differences(table) == [
        "DC images at 40X: 863 of 864 (1 missing)",
        "DC images at 100X: 904 of 903 (1 more than BreaKHis_v1)",
        "LC images at 40X: 157 of 156 (1 more than BreaKHis_v1)",
        "LC images at 100X: 169 of 170 (1 missing)",
    ]


@needs_real
def test_published_counts_match_the_official_fold_files():
    names = [parse_name(f) for f in read_official(FOLDS).query("fold == 1")["filename"]]
    table = pd.DataFrame(
        [(n.tumor_class, n.subtype, n.patient, n.magnification) for n in names],
        columns=["tumor_class", "subtype", "patient", "magnification"],
    )
    assert breakhis.differences(table) == []


@needs_real
def test_data_check_on_the_real_sample_names_the_counts_it_lacks(capsys):
    assert main(["data", "check", "--data", str(MINI)]) == 0
    out, err = capsys.readouterr()
    assert "not the complete BreaKHis_v1" in out and "Traceback" not in out + err
    for line in ("images: 283 of 7,909 (7,626 missing)", "patients: 22 of 82", "benign images: 151 of 2,480"):
        assert line in out
    assert index_tree(MINI).describe()["complete"] is False


def test_synthetic_tree_is_not_compared_with_breakhis(tiny_tree, capsys):
    assert main(["data", "check", "--data", str(tiny_tree)]) == 0
    out = capsys.readouterr().out
    assert "not compared" in out and "complete BreaKHis_v1" not in out
    assert index_tree(tiny_tree, "synthetic").describe()["complete"] is None


def test_leaderboard_labels_sections_of_an_incomplete_tree():
    from bhbench.leaderboard.render import dataset_title
    from bhbench.record import DatasetInfo

    def desc(complete: bool) -> DatasetInfo:
        return DatasetInfo("breakhis-01234567", "breakhis", "0123456789", 283, 22, False, complete, ())

    assert "not the complete BreaKHis_v1" in dataset_title(desc(False))
    assert "not the complete" not in dataset_title(desc(True))
