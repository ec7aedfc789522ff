"""Not a leak: rarely used routes import heavy modules on first use, after warm-up."""

from flask import Flask

app = Flask(__name__)


@app.get("/export")
def export() -> dict[str, int]:
    import tarfile
    import xml.dom.minidom

    doc = xml.dom.minidom.parseString("<rows><row>1</row></rows>")
    return {"rows": len(doc.getElementsByTagName("row")), "tar": int(tarfile.BLOCKSIZE)}


@app.get("/stats")
def stats() -> dict[str, float]:
    import fractions
    import statistics

    return {"mean": float(statistics.mean([fractions.Fraction(1, 3), 1, 2]))}


@app.get("/config")
def config() -> dict[str, int]:
    import configparser
    import html.parser
    import plistlib

    parser = configparser.ConfigParser()
    parser.read_string("[a]\nb = 1\n")
    return {"b": parser.getint("a", "b"), "fmt": int(plistlib.FMT_XML.value),
            "parser": len(html.parser.HTMLParser.__name__)}


@app.get("/items/<int:item_id>")
def item(item_id: int) -> dict[str, int]:
    return {"item": item_id}
