"""Scanning a catalog folder: symbolic links are followed, but no loop and no file twice."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
from PIL import Image

from stylefinder.catalog.scan import scan_folder, scan_list


def _photo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (200, 0, 0)).save(path)
    return path


def _scan_to(pipe, root: Path, kwargs: dict) -> None:
    pipe.send([f.relpath for f in scan_folder(root, **kwargs)])


def _relpaths(root: Path, **kwargs) -> list[str]:
    """The scanned relative paths; fails (instead of hanging the suite) if a loop never ends."""
    if not hasattr(os, "fork"):
        pytest.skip("needs fork to stop a runaway scan")
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_scan_to, args=(send, root, kwargs), daemon=True)
    child.start()
    finished = receive.poll(10)
    if not finished:
        child.kill()
    child.join()
    assert finished, "scan_folder did not finish within 10 s (a symlink loop?)"
    return receive.recv()


def test_link_to_the_catalog_itself_is_not_a_second_copy(tmp_path: Path):
    root = tmp_path / "catalog"
    _photo(root / "a.png")
    os.symlink(".", root / "loop")
    assert _relpaths(root) == ["a.png"]


def test_two_loop_links_terminate(tmp_path: Path):
    root = tmp_path / "catalog"
    _photo(root / "tops" / "a.png")
    os.symlink(".", root / "loop1")
    os.symlink("..", root / "tops" / "up")
    os.symlink(root, root / "tops" / "loop2")
    assert _relpaths(root) == ["tops/a.png"]


def test_file_link_to_a_listed_file_is_listed_once(tmp_path: Path):
    root = tmp_path / "catalog"
    _photo(root / "b.png")
    os.symlink("b.png", root / "a.png")  # sorts first, but the real file wins
    os.symlink(root / "b.png", root / "c.png")
    files = scan_folder(root)
    assert [f.relpath for f in files] == ["b.png"]
    assert files[0].abspath == root / "b.png"


def test_link_to_a_folder_inside_the_catalog_adds_nothing(tmp_path: Path):
    root = tmp_path / "catalog"
    _photo(root / "tops" / "a.png")
    os.symlink("tops", root / "alias")
    assert _relpaths(root) == ["tops/a.png"]


def test_link_to_an_outside_folder_is_indexed_once(tmp_path: Path):
    root = tmp_path / "catalog"
    _photo(root / "a.png")
    _photo(tmp_path / "supplier" / "coat.png")
    os.symlink(tmp_path / "supplier", root / "s1")
    os.symlink(tmp_path / "supplier", root / "s2")
    os.symlink(tmp_path / "supplier" / "coat.png", root / "z.png")
    os.symlink(root, tmp_path / "supplier" / "back")  # a loop through the outside folder
    assert _relpaths(root) == ["a.png", "s1/coat.png"]


def test_broken_links_and_links_into_the_index_are_skipped(tmp_path: Path):
    root = tmp_path / "catalog"
    _photo(root / "a.png")
    _photo(root / "index" / "thumbs" / "t.png")
    os.symlink(root / "gone.png", root / "broken.png")
    os.symlink(root / "gone", root / "broken-folder")
    os.symlink(root / "index" / "thumbs", root / "thumbs")
    assert _relpaths(root, skip=[root / "index"]) == ["a.png"]


def test_hard_links_in_the_catalog_stay_separate_items(tmp_path: Path):
    root = tmp_path / "catalog"
    _photo(root / "a.png")
    os.link(root / "a.png", root / "b.png")
    assert _relpaths(root) == ["a.png", "b.png"]


def test_a_list_of_paths_names_the_files_under_its_folder(tmp_path):
    for name in ("a.png", "sub/b.jpg", "c.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    Image.new("RGB", (4, 4)).save(outside)
    listing = tmp_path / "batch.txt"
    lines = ["# batch 7", "sub/b.jpg", "", f"{tmp_path / 'a.png'}", "a.png", "gone.png"]
    lines += [str(outside), "notes.txt", "https://shop.example/x.jpg"]
    listing.write_text("\n".join(lines) + "\n")
    root, files, problems = scan_list(listing)
    assert root == tmp_path.resolve()
    assert [f.relpath for f in files] == ["a.png", "sub/b.jpg"]  # c.png is not listed
    assert files[0].size == (tmp_path / "a.png").stat().st_size
    assert problems == [
        "line 5: a.png: listed twice",
        "line 6: gone.png: no such file",
        f"line 7: {outside}: outside the list's folder {tmp_path.resolve()}",
        "line 8: notes.txt: not an image file name",
        "line 9: https://shop.example/x.jpg: web addresses are not read from lists yet",
    ]
    listing.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="UTF-8"):
        scan_list(listing)


def test_a_list_may_name_files_on_object_storage_by_uri(tmp_path):
    """`file://` goes through pyarrow's filesystems as `s3://` does: metadata only."""
    pytest.importorskip("pyarrow")
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    uri = (tmp_path / "a.png").as_uri()
    listing = tmp_path / "remote.txt"
    listing.write_text(f"{uri}\n{uri}\n{(tmp_path / 'gone.png').as_uri()}\n")
    _, files, problems = scan_list(listing)
    assert [(f.relpath, f.abspath, f.size) for f in files] == [
        (uri, uri, (tmp_path / "a.png").stat().st_size)
    ]
    assert files[0].mtime_ns > 0
    assert problems == [
        f"line 2: {uri}: listed twice",
        f"line 3: {(tmp_path / 'gone.png').as_uri()}: no such file",
    ]
