"""Reading feeds: the sample feeds (made from the demo catalog) in every format give the same
products; bad rows are listed with their line numbers and never stop the read."""

from __future__ import annotations

import json

import pytest
from feedserver import DATA, PRODUCTS

from stylefinder.catalog.feeds.formats import FeedFormatError, detect_format, read_feed

SAMPLES = {
    "shopify_products.csv": ("shopify", "csv", "shopify_products.csv line 10: empty Handle"),
    "google_merchant.tsv": ("google", "tsv", "google_merchant.tsv line 8: no id"),
    "google_merchant.xml": ("google", "xml", "google_merchant.xml line 118: product 'no-photo'"),
    "woocommerce_products.csv": ("woocommerce", "csv", "woocommerce_products.csv line 5: no id"),
}


@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_feed_gives_the_demo_products(name):
    reading = read_feed(DATA / name)
    feed_format, syntax, problem = SAMPLES[name]
    assert (reading.format, reading.syntax) == (feed_format, syntax)
    assert {p.id: len(p.images) for p in reading.products} == PRODUCTS
    assert list({p.id: 0 for p in reading.products}) == list(PRODUCTS)  # feed order
    assert len(reading.problems) == 1 and reading.problems[0].startswith(problem)
    by_id = {p.id: p for p in reading.products}
    pullover = by_id["pullover-cosy"]
    assert pullover.title == "Cosy pullover"
    assert pullover.description == "Soft knit & warm.\nWool blend"  # HTML stripped to text
    assert pullover.images[0].endswith("fmnist-test-00001.png")  # the main photo first
    assert [u.rsplit("-", 1)[1] for u in by_id["dress-wrap"].images] == [
        "00013.png",
        "00029.png",
        "00032.png",
    ]
    assert pullover.colour == "grey"
    assert by_id["bag-tote"].availability == "out of stock"
    assert by_id["dress-wrap"].category == "Dress"
    if feed_format != "woocommerce":  # the variable tee has no price of its own
        assert by_id["tee-basic"].price == "15.00"


def test_google_fields(tmp_path):
    product = read_feed(DATA / "google_merchant.xml").products[0]
    assert (product.price, product.currency) == ("89.00", "EUR")
    assert product.link == "http://shop.example/products/ankle-boot-classic"
    assert product.brand == "Stylefinder Demo"
    assert product.tags == ("unisex",)  # gender
    assert product.availability == "in stock"


def test_shopify_images_follow_image_position():
    feed = (
        "Handle,Title,Body (HTML),Vendor,Type,Tags,Variant Price,Image Src,Image Position\n"
        'tee,Tee,<p>Hi</p>,Acme,Shirt,"a, b",10.00,https://s.example/3.jpg,3\n'
        "tee,,,,,,,https://s.example/1.jpg,1\n"
        "tee,,,,,,,https://s.example/2.jpg,2\n"
        "tee,,,,,,,https://s.example/x.jpg,first\n"
    )
    reading = read_feed(feed.encode(), name="export.csv")
    (tee,) = reading.products
    assert [u[-5:] for u in tee.images] == ["1.jpg", "2.jpg", "3.jpg", "x.jpg"]
    assert (tee.title, tee.brand, tee.category, tee.tags) == ("Tee", "Acme", "Shirt", ("a", "b"))
    assert reading.problems == [
        "export.csv line 5: Image Position 'first' is not a number; the image goes last"
    ]


def test_generic_csv_groups_rows_by_id_and_lists_bad_rows():
    feed = (
        "id,title,price,image_url\n"
        "a,Red dress,49.90,https://s.example/a1.jpg\n"
        "a,,,https://s.example/a2.jpg\n"
        "b,Blue shirt,oops,too,many\n"
        "\n"
        "c,Green coat,20,ftp://s.example/c.jpg\n"
        "d,Hat,5,https://s.example/d.jpg\n"
    )
    reading = read_feed(feed.encode(), name="shop.csv")
    assert reading.format == "csv"
    assert [(p.id, len(p.images)) for p in reading.products] == [("a", 2), ("d", 1)]
    assert reading.problems == [
        "shop.csv line 4: 5 fields, the header has 4; row skipped",
        "shop.csv line 6: image 'ftp://s.example/c.jpg' is not an http(s) address; left out",
        "shop.csv line 6: product 'c' has no image URL; left out",
    ]


def test_a_csv_without_ids_gets_ids_from_its_image_urls():
    feed = b"title,image\nTee,https://s.example/t.jpg\n"
    (product,) = read_feed(feed).products
    assert product.id.startswith("url-")
    assert read_feed(feed).products[0].id == product.id  # stable


def test_json_lists_and_shopify_products_json():
    plain = [
        {"id": 1, "title": "Tee", "image_url": "https://s.example/1.jpg", "price": "9.99 USD"},
        "not an object",
        {"id": 2, "title": "No photo"},
    ]
    reading = read_feed(json.dumps(plain).encode(), name="feed.json")
    assert [(p.id, p.price, p.currency) for p in reading.products] == [("1", "9.99", "USD")]
    assert reading.problems == [
        "feed.json item 2: not an object; left out",
        "feed.json item 3: product '2' has no image URL; left out",
    ]
    shopify = {
        "products": [
            {
                "id": 7,
                "handle": "tee",
                "title": "Tee",
                "body_html": "<p>Soft</p>",
                "vendor": "Acme",
                "product_type": "Shirt",
                "tags": "a, b",
                "variants": [{"price": "12.00"}],
                "images": [
                    {"src": "https://s.example/2.jpg", "position": 2},
                    {"src": "https://s.example/1.jpg", "position": 1},
                ],
            }
        ]
    }
    (tee,) = read_feed(json.dumps(shopify).encode()).products
    assert (tee.id, tee.description, tee.price, tee.brand, tee.category) == (
        "7",
        "Soft",
        "12.00",
        "Acme",
        "Shirt",
    )
    assert [u[-5:] for u in tee.images] == ["1.jpg", "2.jpg"]


def test_detection_and_override():
    assert detect_format("Handle,Title,Image Src\n") == ("shopify", "csv")
    assert detect_format("ID,Type,SKU,Name,Images\n") == ("woocommerce", "csv")
    assert detect_format("sku;name;image_url\n") == ("csv", "csv")
    assert detect_format('[{"id": 1}]') == ("json", "json")
    with pytest.raises(FeedFormatError, match="--feed-format"):
        detect_format("a,b,c\n1,2,3\n")
    shopify = DATA / "shopify_products.csv"
    as_csv = read_feed(shopify, feed_format="csv")  # the generic reader finds Image Src
    assert as_csv.format == "csv"
    # the row without a Handle becomes a product of its own (id from its image URL)
    assert len(as_csv.products) == 11 and as_csv.products[4].id.startswith("url-")
    with pytest.raises(FeedFormatError, match="not valid JSON"):
        read_feed(shopify, feed_format="json")
    with pytest.raises(FeedFormatError, match="not a shopify CSV"):
        read_feed(DATA / "google_merchant.xml", feed_format="shopify")
    with pytest.raises(FeedFormatError, match="unknown feed format"):
        read_feed(shopify, feed_format="xlsx")


def test_xml_entities_are_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    external = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x SYSTEM "file://{secret}">]>'
        '<rss xmlns:g="http://base.google.com/ns/1.0"><channel><item><g:id>&x;</g:id>'
        "<g:image_link>https://s.example/1.jpg</g:image_link></item></channel></rss>"
    )
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
        "<rss><channel><item><id>&b;</id></item></channel></rss>"
    )
    for document in (external, laughs):
        reading = read_feed(document.encode(), name="feed.xml")
        assert reading.products == []
        assert "declares entities" in reading.problems[0]
        assert "SECRET" not in repr(reading)


def test_a_broken_xml_feed_keeps_the_items_before_the_break():
    document = (
        '<rss xmlns:g="http://base.google.com/ns/1.0"><channel>\n'
        "<item><g:id>a</g:id><g:image_link>https://s.example/a.jpg</g:image_link></item>\n"
        "<item><g:id>b</g:id><g:image_link>https://s.example/b.jpg</g:image_link></item>\n"
        "<item><g:id>c</g:id><g:image_link>https://s.example/c.jpg</g:oops></item>\n"
    )
    reading = read_feed(document.encode(), name="feed.xml")
    assert [p.id for p in reading.products] == ["a", "b"]
    assert reading.problems[0].startswith("feed.xml line 4: not well-formed XML")


def test_an_atom_feed_and_a_latin1_csv():
    atom = (
        '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:g="http://base.google.com/ns/1.0">'
        '<entry><g:id>a</g:id><title>Caf\u00e9 tee</title><link href="https://s.example/a"/>'
        "<g:image_link>https://s.example/a.jpg</g:image_link></entry></feed>"
    )
    (entry,) = read_feed(atom.encode()).products
    assert (entry.title, entry.link) == ("Caf\u00e9 tee", "https://s.example/a")
    latin = "id,title,image\n1,Cr\u00e8me top,https://s.example/1.jpg\n".encode("cp1252")
    reading = read_feed(latin, name="old.csv")
    assert reading.products[0].title == "Cr\u00e8me top"
    assert "not UTF-8" in reading.problems[0]
