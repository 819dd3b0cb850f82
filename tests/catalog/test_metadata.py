"""Joining images with CSV metadata: path column, id column, Kaggle styles.csv, bad rows."""

from __future__ import annotations

import codecs
import csv
from pathlib import Path

import pytest
from PIL import Image

from stylefinder.catalog.metadata import PARSER_FIELD_LIMIT, match_files, read_metadata_csv
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
    assert by_id["A"].metadata == {"category": "Dress", "price": 10}
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


def test_latin1_csv_keeps_its_accents(tmp_path: Path):
    root = _catalog(tmp_path / "shop", ["a.png", "b.png"])
    (root / "m.csv").write_bytes("path,name\na.png,Crème\nb.png,Façade\n".encode("latin-1"))
    table = read_metadata_csv(root / "m.csv", root)
    assert table.by_path["a.png"].metadata == {"name": "Crème"}
    assert table.by_path["b.png"].metadata == {"name": "Façade"}
    assert table.encoding == "cp1252"
    assert table.problems == [
        "m.csv: not UTF-8 (line 2 is the first that is not); read as "
        "cp1252: if accented letters look wrong, save the file as UTF-8"
    ]


def test_mostly_utf8_csv_with_one_bad_byte_never_gets_replacement_characters(tmp_path: Path):
    root = _catalog(tmp_path / "shop", ["a.png", "b.png"])
    data = codecs.BOM_UTF8 + "path,name\na.png,Crème\n".encode() + b"b.png,Cr\xe8me \x80\n"
    (root / "m.csv").write_bytes(data)
    table = read_metadata_csv(root / "m.csv", root)
    assert table.encoding == "cp1252"
    assert table.by_path["b.png"].metadata == {"name": "Crème €"}
    assert table.by_path["a.png"].metadata == {"name": "CrÃ¨me"}  # the file is one encoding
    assert all("\ufffd" not in str(row.metadata) for row in table.by_path.values())
    assert any("line 3 is the first" in p for p in table.problems)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-32"])
def test_unicode_csvs_are_read_without_a_note(tmp_path: Path, encoding: str):
    root = _catalog(tmp_path / "shop", ["a.png"])
    (root / "m.csv").write_bytes("path,name\na.png,Crème ✓\n".encode(encoding))
    table = read_metadata_csv(root / "m.csv", root)
    assert table.by_path["a.png"].metadata == {"name": "Crème ✓"}
    assert table.encoding == encoding
    assert table.problems == []


def test_bytes_undefined_in_cp1252_fall_back_to_latin1(tmp_path: Path):
    root = _catalog(tmp_path / "shop", ["a.png"])
    (root / "m.csv").write_bytes(b"path,name\na.png,Cr\xe8me\x81\n")
    table = read_metadata_csv(root / "m.csv", root)
    assert table.encoding == "latin-1"
    assert table.by_path["a.png"].metadata == {"name": "Crème\x81"}


def test_a_huge_field_skips_its_row_not_the_file(tmp_path: Path):
    root = _catalog(tmp_path / "shop", ["a.png", "b.png", "c.png"])
    blob = "x" * 200_000
    (root / "m.csv").write_text(
        f'path,name,note\na.png,Huge,"{blob}"\nb.png,Bee,ok\nc.png,"multi\nline",ok\n'
    )
    limit = csv.field_size_limit()
    table = read_metadata_csv(root / "m.csv", root)
    assert table.problems == [
        "m.csv line 2: a field is over 128 KB; row skipped (metadata fields must be under "
        "131,072 characters: leave images out of the CSV)"
    ]
    assert set(table.by_path) == {"b.png", "c.png"}
    assert table.by_path["c.png"].metadata == {"name": "multi\nline", "note": "ok"}
    assert csv.field_size_limit() == limit  # the module-wide limit is restored


def test_numeric_columns_become_numbers(tmp_path: Path):
    root = _catalog(tmp_path / "shop", ["a.png", "b.png", "c.png"])
    (root / "m.csv").write_text(
        "id,path,price,stock,zip,sku,size,rating,score,ean,code\n"
        "1,a.png,49.90,3,00123,12,38,nan,-0.5,4006381333931123,1e5\n"
        "2,b.png,49,-2,75001,007,M,4,.25,4006381333932,2e5\n"
        "3,c.png,,0,1000,15,40,5,0,1,3\n"
    )
    table = read_metadata_csv(root / "m.csv", root)
    a, b, c = (table.by_path[p].metadata for p in ("a.png", "b.png", "c.png"))
    assert table.by_path["a.png"].item_id == "1"  # ids stay text
    assert a["price"] == 49.9 and b["price"] == 49.0 and isinstance(b["price"], float)
    assert "price" not in c  # an empty cell is still left out
    assert (a["stock"], b["stock"], c["stock"]) == (3, -2, 0)
    assert all(type(m["stock"]) is int for m in (a, b, c))
    assert (a["zip"], a["sku"], a["size"], a["rating"]) == ("00123", "12", "38", "nan")
    assert (a["score"], b["score"], c["score"]) == (-0.5, 0.25, 0.0)
    assert (a["ean"], a["code"]) == ("4006381333931123", "1e5")  # too long; exponent: codes


def test_numbers_reach_the_entries(tmp_path: Path):
    root = _catalog(tmp_path / "shop", ["a.png"])
    (root / "m.csv").write_text("path,price\na.png,49\n")
    entries, _, _ = match_files(scan_folder(root), read_metadata_csv(root / "m.csv", root))
    assert entries[0].metadata == {"price": 49}


def test_a_field_over_the_parser_limit_stops_with_a_clear_problem(tmp_path: Path):
    root = _catalog(tmp_path / "shop", ["a.png", "b.png"])
    blob = "x" * (PARSER_FIELD_LIMIT + 1)
    (root / "m.csv").write_text(f'path,note\na.png,ok\nb.png,"{blob}"\n')
    table = read_metadata_csv(root / "m.csv", root)
    assert set(table.by_path) == {"a.png"}
    assert table.problems == [
        "m.csv line 3: a field is over 16 MB; stopped (leave images and other large data out "
        "of the metadata CSV)"
    ]


def test_paths_resolve_as_the_file_system_does(tmp_path: Path):
    """A path through `..`, an absolute one, one through a link into a folder of the catalog
    and one through a link to a folder outside it: matched or refused as the real path they
    name says (`..` after a link goes up from where the link points)."""
    root = _catalog(tmp_path / "shop", ["tops/a.png", "tops/b.png", "tops/inner/x.png", "c.png"])
    _catalog(tmp_path / "elsewhere", ["d.png"])
    (root / "down").symlink_to(root / "tops" / "inner", target_is_directory=True)
    (root / "away").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    csv = root / "meta.csv"
    csv.write_text(
        "id,path\n"
        "A,tops/../tops/a.png\n"
        f"B,{root}/c.png\n"
        "C,down/../b.png\n"
        "D,away/d.png\n"
        "E,../shop/c.png\n"
    )
    table = read_metadata_csv(csv, root)
    assert {row.item_id: path for path, row in table.by_path.items()} == {
        "A": "tops/a.png",
        "B": "c.png",
        "C": "tops/b.png",
    }
    assert any("line 5: empty path or outside the catalog" in p for p in table.problems)
    assert any("line 6: duplicate path 'c.png'" in p for p in table.problems)
