"""Joining images with CSV metadata: path column, id column, Kaggle styles.csv, bad rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from stylefinder.catalog.metadata import match_files, read_metadata_csv
from stylefinder.catalog.scan import scan_folder


def _catalog(root: Path, names: list[str]) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(root / name)
    return root


def test_path_column_with_bad_rows(tmp_path: Path):
    root = _catalog(tmp_path / "shop", ["a.png", "tops/b.png", "c.png"])
    csv = root / "meta.csv"
    csv.write_text(
        "id,path,category,price\n"
        "A,a.png,Dress,10\n"
        "B,./tops/b.png,Top,\n"
        "X,missing.png,Coat,3\n"
        "broken,row\n"
        "A,c.png,Dup,1\n"
        ",c.png,NoId,1\n"
    )
    table = read_metadata_csv(csv, root)
    entries, problems, unmatched = match_files(scan_folder(root), table)
    by_id = {e.item_id: e for e in entries}
    assert by_id["A"].metadata == {"category": "Dress", "price": "10"}
    assert by_id["B"].metadata == {"category": "Top"}  # empty values are left out
    assert by_id["c.png"].metadata == {}  # no good row: id is its path
    assert unmatched == 1  # the row for missing.png
    assert problems == []
    assert any("line 5: 2 fields, the header has 4" in p for p in table.problems)
    assert any("line 6: duplicate id 'A'" in p for p in table.problems)
    assert any("line 7: empty id" in p for p in table.problems)


def test_kaggle_styles_layout_matches_id_to_file_name(tmp_path: Path):
    root = _catalog(tmp_path / "kaggle", ["images/15970.jpg", "images/39386.jpg", "images/7.jpg"])
    csv = root / "styles.csv"
    csv.write_text(
        "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,"
        "productDisplayName\n"
        "15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Shirt\n"
        "39386,Men,Apparel,Bottomwear,Jeans,Blue,Summer,2012,Casual,Peter England Men Jeans\n"
        "59263,Women,Accessories,Watches,Watches,Silver,Winter,2016,Casual,Titan Women, Watch\n"
    )
    table = read_metadata_csv(csv, root)
    entries, _, unmatched = match_files(scan_folder(root), table)
    by_id = {e.item_id: e for e in entries}
    assert by_id["15970"].metadata["articleType"] == "Shirts"
    assert by_id["39386"].metadata["baseColour"] == "Blue"
    assert by_id["15970"].file.relpath == "images/15970.jpg"
    assert "images/7.jpg" in by_id  # image without a row keeps its path as id
    assert unmatched == 0  # the malformed watch row is a problem, not an unmatched row
    assert len(table.problems) == 1 and "line 4: 11 fields" in table.problems[0]


def test_csv_without_id_or_path_is_reported(tmp_path: Path):
    root = _catalog(tmp_path / "shop", ["a.png"])
    (root / "m.csv").write_text("name,colour\na,red\n")
    table = read_metadata_csv(root / "m.csv", root)
    assert "no 'id' or 'path' column" in table.problems[0]
    entries, _, _ = match_files(scan_folder(root), table)
    assert [e.item_id for e in entries] == ["a.png"]


def test_missing_csv_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_metadata_csv(tmp_path / "nope.csv", tmp_path)


def test_scan_skips_hidden_non_images_and_the_index(tmp_path: Path):
    root = _catalog(tmp_path / "shop", ["a.JPG", ".hidden/b.png", "index/c.png", "d.webp"])
    (root / "notes.txt").write_text("hello")
    (root / ".e.png").write_bytes(b"")
    files = scan_folder(root, skip=[root / "index"])
    assert [f.relpath for f in files] == ["a.JPG", "d.webp"]
