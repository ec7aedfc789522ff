"""The template helper escapes by default; JSON for a script element cannot end it."""

from __future__ import annotations

import json

from memwarden.find.report.markup import Markup, escape, html, join, script_json

NASTY = '</script><script>alert(1)</script>"\'&<!-- ]]> \u2028\u2029'


def test_values_are_escaped_unless_already_markup() -> None:
    out = html('<td title="{t}">{v}</td>', t='"><img src=x onerror=1>', v="<b>&</b>")
    assert out == ('<td title="&quot;&gt;&lt;img src=x onerror=1&gt;">'
                   "&lt;b&gt;&amp;&lt;/b&gt;</td>")
    assert html("<p>{v}</p>", v=Markup("<b>ok</b>")) == "<p><b>ok</b></p>"
    assert html("{n:,}", n=12345) == "12,345"
    assert isinstance(html("x"), Markup)


def test_escape_is_idempotent_on_markup_and_quotes_both_kinds() -> None:
    once = escape(NASTY)
    assert escape(once) is once
    assert "'" not in once and '"' not in once and "<" not in once


def test_join_escapes_plain_parts() -> None:
    assert join(["<a>", Markup("<b>")], ", ") == "&lt;a&gt;, <b>"


def test_script_json_cannot_close_its_element_and_round_trips() -> None:
    data = {"tip": [NASTY], NASTY: 1.5}
    text = script_json(data)
    for forbidden in ("<", ">", "&", "\u2028", "\u2029"):
        assert forbidden not in text
    assert json.loads(text) == data
