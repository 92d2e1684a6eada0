"""A large page parsed in pieces (``_nesting.segments``): the same links, <title>, <base>
and <meta> as one whole parse, never markup read from inside a script or comment, and
work linear in the page whatever it holds (counted, not timed)."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from typing import Any

import pytest

from shoal.crawler import _nesting
from shoal.crawler._html import ParsedHTML, _parse_into, bounded, parse_html
from shoal.crawler._nesting import SCAN_ABOVE, SEGMENT_TAGS, segments


def whole(text: str) -> ParsedHTML:
    out = ParsedHTML(None, None, [], [])
    _parse_into(text, out)
    return out


def same(text: str) -> None:
    """Segmented and one whole parse agree (the page is small enough for both)."""
    assert text.count("<") > SCAN_ABOVE  # or parse_html parses it whole anyway
    got, want = parse_html(text), whole(text)
    # Each parse lists <a> links before <area> ones, so only <a> order is the page's.
    assert sorted(got.hrefs) == sorted(want.hrefs)
    assert [h for h in got.hrefs if "area" not in h] == [h for h in want.hrefs if "area" not in h]
    assert got.metas == want.metas
    assert (got.title, got.base) == (want.title, want.base)


def test_script_and_comment_content_is_never_parsed_as_markup() -> None:
    # More than SEGMENT_TAGS "<" inside a script, a style and a comment: a cut inside
    # them parsed JavaScript as HTML (a link from a string, a robots meta obeyed).
    js = "for(i=0;i<n;i++){t+='<li>'+i+'</li>'}" * 600
    js += "el.innerHTML='<a href=\"/from-js\">x</a><meta name=robots content=nofollow>';"
    hidden = '<a href="/from-comment">x</a><meta name=robots content=noindex>'
    text = (
        "<html><body>"
        + "<p>x</p>" * 5000
        + "<script>"
        + js
        + "</script>"
        + "<style>"
        + "a<b{}" * 3000
        + '"<a href=/from-style>"</style>'
        + "<!--"
        + "<i>" * 3000
        + hidden
        + "-->"
        + "<textarea>"
        + "<b>" * 3000
        + "<a href=/from-textarea></textarea>"
        + '<a href="/real">r</a></body></html>'
    )
    got = parse_html(text)
    assert got.hrefs == ["/real"] and got.metas == []
    same(text)


def test_a_cut_never_falls_inside_a_quoted_attribute_value() -> None:
    # A ">" or "<" inside a quoted value does not end or start a tag.
    link = '<a title="1>0" data-x=\'<a href=/no>\' href="/q{}">q</a>'
    text = "<p>" + "".join(link.format(i) + "<b>x</b>" * 3 for i in range(3000))
    assert parse_html(text).hrefs == [f"/q{i}" for i in range(3000)]
    same(text)
    # Every cut is at a tag the tokenizer sees, never inside one.
    for cut in segments(text)[1:]:
        assert text.startswith(("<a title", "<b>", "</b>", "</a>"), cut), text[cut : cut + 20]


# Fragments of a generated page; "{}" becomes a number. Only what reads the same in a
# piece as in the whole page: no <select>, <template> or <frameset>, whose context a cut
# drops.
FRAGMENTS = [
    "<p>text {}</p>",
    "<div><span>s</span>",
    "</div>",
    '<a href="/a{}">x</a>',
    '<a title="1>0" href="/gt{}">x</a>',
    "<a title='<b>' href=/lt{}>x</a>",
    '<a data-x="<a href=/in-attr{}>" href="/out{}">x</a>',
    '<a ="x>" href=/eq{}>',
    "<area href=/area{}>",
    "<meta name=k{} content=v>",
    "<base href=/b{}/>",
    "<title>t{}</title>",
    "<br/><img src=x>",
    "<!-- <a href=/comment{}> <meta name=robots content=nofollow> -->",
    "<!---->",
    "<!-->",
    "<!x <a href=/bogus{}>",
    "<? <a href=/pi{}> ?>",
    "</ <a href=/endbogus{}>",
    "</>",
    "a < b <3 <",
    "<script>if(a<b){x='<a href=/js{}>'}</scripts></script>",
    "<style>a<b{}</style>",
    "<textarea><a href=/ta{}></textarea>",
    "<title><a href=/title{}></title>",
    "<xmp><a href=/xmp{}></xmp>",
    "<iframe><a href=/iframe{}></iframe>",
    "<noembed><a href=/noembed{}></noembed>",
    "<noframes><a href=/noframes{}></noframes>",
    "<SCRIPT>'<a href=/upper{}>'</SCRIPT >",
    "<svg><style><a href=/svg-style{}></a></style></svg>",
    "<svg><foreignObject><style><a href=/fo-style{}></style></foreignObject></svg>",
    "<math><mi><script>'<a href=/mi-script{}>'</script></mi></math>",
    "<svg><![CDATA[<a href=/cdata{}>]]></svg>",
    "<svg><title>s{}<a href=/svg-title{}></a></title></svg>",
    "<svg><p><style><a href=/breakout{}></style>",
]


def big(rng: random.Random, i: int) -> str:
    """A comment or raw-text element holding more "<" than a piece takes."""
    inner = "".join(rng.choice(["<b>", "<a href=/deep{}>", "x<y", "<!-- -->"]) for _ in range(1500))
    inner = inner.replace("{}", str(i))
    return rng.choice(
        [
            f"<script>{inner.replace('<!--', '')}</script>",
            f"<style>{inner}</style>",
            f"<!--{inner.replace('-->', '')}-->",
            f"<textarea>{inner}</textarea>",
            f"<xmp>{inner}</xmp>",
        ]
    )


@pytest.mark.parametrize("seed", range(24))
def test_segmented_links_are_those_of_one_whole_parse(seed: int) -> None:
    rng = random.Random(seed)
    parts = ["<html><head></head><body>"]
    tags = 0
    while tags < 3 * SCAN_ABOVE:
        if rng.random() < 0.004:
            part = big(rng, len(parts))
        else:
            part = rng.choice(FRAGMENTS).replace("{}", str(len(parts)))
        parts.append(part)
        tags += part.count("<")
    if seed % 3 == 0:  # and something never closed at the end
        parts.append(rng.choice(["<!-- <a href=/x>", "<script><a href=/x>", '<a title="x']))
        parts.append("<a href=/after-unclosed>" * 2000)
    text = "".join(parts)
    same(text)


class Counting:
    """A compiled pattern that adds up how many characters each search or match reads."""

    def __init__(self, pattern: re.Pattern[str], log: list[int]) -> None:
        self.pattern, self.log = pattern, log

    def search(self, text: str, pos: int = 0) -> re.Match[str] | None:
        m = self.pattern.search(text, pos)
        self.log.append((m.end() if m else len(text)) - pos)
        return m

    def match(self, text: str, pos: int = 0) -> re.Match[str] | None:
        m = self.pattern.match(text, pos)
        self.log.append((m.end() if m else len(text)) - pos)
        return m

    def finditer(self, text: str, pos: int = 0) -> Iterator[re.Match[str]]:
        for m in self.pattern.finditer(text, pos):
            self.log.append(m.end() - pos)  # the text skipped to it, and it
            pos = m.end()
            yield m


HOSTILE = {
    "unclosed comments": "<!--a",
    "unclosed scripts": "<script>a",
    "unclosed styles": "<style>",
    "titles": "<title>",
    "comments closed at the end": "<!--<a href=/c>",
    "unclosed double quotes": '<a title="',
    "unclosed single quotes": "<a title='",
    "tags never ended": "<a ",
    "values after =": '<a x= "',
    "bogus comments": "<!x",
    "processing instructions": "<?x",
    "end tags never ended": "</x ",
    "raw end tags never ended": "<script></script",
    "comment ends never ended": "<!--a--",
    "nested divs": "<div>",
    "links": '<a href="/p">.</a>',
}


@pytest.mark.timeout(60)  # the quadratic scans took minutes here
@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_pages_are_scanned_in_linear_work(name: str, monkeypatch: Any) -> None:
    log: list[int] = []
    for attr in ("_TAG", "_SIMPLE_TAG", "_MARKUP", "_COMMENT_END", "_ASCII_LETTER", "_GT"):
        monkeypatch.setattr(_nesting, attr, Counting(getattr(_nesting, attr), log))
    raw_end = _nesting._raw_end
    monkeypatch.setattr(_nesting, "_raw_end", lambda tag: Counting(raw_end(tag), log))
    unit = HOSTILE[name]
    for n in (20_000, 200_000):
        text = "<html><body>" + unit * n + "<a href=/last>x</a>" + "<p>" * 2 * SCAN_ABOVE
        log.clear()
        cuts = segments(text)
        assert cuts == sorted(set(cuts)) and cuts[0] == 0
        assert sum(log) <= 3 * len(text), (n, sum(log), len(text))
        assert len(log) <= 3 * text.count("<") + 10
        log.clear()
        bounded(text)  # nesting_cut, for selectors, scans the same way
        assert sum(log) <= 3 * len(text), (n, sum(log), len(text))
        parse_html(text)  # and lexbor's share of it is linear too (the timeout guards it)
        if name in ("nested divs", "links"):
            assert len(cuts) > n // SEGMENT_TAGS


@pytest.mark.timeout(60)  # each took from seconds to hours before (quadratic scans)
@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_pages_are_parsed_to_the_end_or_to_what_never_ends(name: str) -> None:
    text = "<html><body>" + HOSTILE[name] * 200_000 + "<a href=/last>x</a>"
    links = parse_html(text).hrefs
    if name == "nested divs":  # one whole parse of it is what would take minutes
        assert links == ["/last"]
    else:
        assert links == whole(text).hrefs
    bounded(text)


def test_the_fast_tag_pattern_reads_a_tag_as_the_exact_one_or_leaves_it() -> None:
    rng = random.Random(7)
    pieces = ["a", "b", " ", "=", '"', "'", ">", "<", "/", "\n", "x=", '="', "1>0"]
    for _ in range(20_000):
        text = "<a" + "".join(rng.choice(pieces) for _ in range(rng.randrange(12))) + ">"
        fast, exact = _nesting._SIMPLE_TAG.match(text), _nesting._TAG.match(text)
        assert fast is not None
        if fast.group(2) is not None:
            assert exact is not None and fast.group(0, 1, 2, 3) == exact.group(0, 1, 2, 3), text
