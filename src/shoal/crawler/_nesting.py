"""How deep a page's elements nest, found cheaply, so that a parse can be bounded.

An HTML5 tree builder checks scopes by walking its stack of open elements, so a page
of N nested elements costs it O(N^2): 100,000 nested ``<div>``s (1.1 MB) cost lexbor
tens of seconds of CPU, in one C call that nothing can interrupt. Links, <base>, <title>
and <meta> are therefore read from a large page in pieces (``segments``): every tag is
parsed, each piece at depth 0. Selectors need one whole tree, so the text they get is
cut off where it nests deeper than ``MAX_NESTING`` (browsers cap the depth: Chromium at
512) or after ``MAX_TAGS`` tags, which bounds the tree (~300 bytes a node: a 10 MB page
of links made a 230 MB tree) and so a crawl's memory. (The model is hand-written
because no parser at hand bounds this.)

``nesting_cut`` models the tree builder's stack closely enough for real pages (void
and raw-text elements, comments, elements that close their own kind, end tags that
close what they match) and errs towards *deeper*: every walk down the stack is bounded,
and an end tag it cannot place is ignored rather than allowed to pop more than a
browser would. So a page it passes nests no deeper than the limit in the real parser.
Pages with at most ``SCAN_ABOVE`` start tags (nearly all) are never scanned.
"""

from __future__ import annotations

import re

__all__ = [
    "MAX_NESTING",
    "MAX_OPTIONS",
    "MAX_TAGS",
    "SCAN_ABOVE",
    "SEGMENT_TAGS",
    "nesting_cut",
    "segments",
    "tag_count_cut",
]

MAX_NESTING = 1024
MAX_TAGS = 200_000
# Pages with fewer start tags are not scanned: the scan costs a few times what lexbor's
# parse does, and 8192 elements nested as deep as they can go cost lexbor a fraction of a
# second (each doubling of depth quadruples the time).
SCAN_ABOVE = 8192
# lexbor's cost grows with the square of a <select>'s options (20,000 cost seconds).
MAX_OPTIONS = 4096
# How many tags one parse of a large page's links takes (see ``segments``). A piece
# costs lexbor at most about its square: 1024 formatting elements with distinct attributes
# (the worst found) 4 ms, 1024 nested <div>s 1 ms; and ~300 KB of tree.
SEGMENT_TAGS = 1024


def _names(words: str) -> frozenset[str]:
    return frozenset(words.split())


_TAG = re.compile(r"<(/?)([A-Za-z][^\t\n\f\r />]*)([^>]*)>|<!--")
_VOID = _names(
    "area base basefont bgsound br col embed frame hr img input keygen link meta param "
    "source track wbr"
)
# Their content is text up to their own end tag.
_RAW = _names("script style textarea title xmp iframe noembed noframes")
_BOUNDARY = _names("applet caption html table td th marquee object template")
_SPECIAL = _BOUNDARY | _names(
    "address area article aside base basefont bgsound blockquote body br button center "
    "col colgroup dd details dir div dl dt embed fieldset figcaption figure footer form "
    "frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr iframe img input keygen li "
    "link listing main menu meta nav noembed noframes noscript ol p param plaintext pre "
    "script search section select source style summary tbody textarea tfoot thead title "
    "tr track ul wbr xmp"
)
# Start tags that close an open <p> (in button scope) before they open.
_CLOSES_P = _names(
    "address article aside blockquote center details dialog dir div dl fieldset "
    "figcaption figure footer header hgroup main menu nav ol p search section summary ul "
    "h1 h2 h3 h4 h5 h6 pre listing form table hr xmp"
)
# A start tag that closes an open element of its family, and what the search for it may
# step over on the way down the stack.
_LIST_PASS = frozenset({"address", "div", "p"})
_FAMILIES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "li": (frozenset({"li"}), _LIST_PASS),
    "dd": (frozenset({"dd", "dt"}), _LIST_PASS),
    "dt": (frozenset({"dd", "dt"}), _LIST_PASS),
    "option": (frozenset({"option"}), frozenset()),
    "optgroup": (frozenset({"option", "optgroup"}), frozenset()),
    "td": (frozenset({"td", "th"}), frozenset()),
    "th": (frozenset({"td", "th"}), frozenset()),
    "tr": (frozenset({"tr"}), frozenset({"td", "th"})),
    "tbody": (frozenset({"tbody", "thead", "tfoot"}), frozenset({"tr", "td", "th"})),
    "thead": (frozenset({"tbody", "thead", "tfoot"}), frozenset({"tr", "td", "th"})),
    "tfoot": (frozenset({"tbody", "thead", "tfoot"}), frozenset({"tr", "td", "th"})),
    "a": (frozenset({"a"}), frozenset()),
    "nobr": (frozenset({"nobr"}), frozenset()),
    "button": (frozenset({"button"}), frozenset()),
}
_FOREIGN = frozenset({"svg", "math"})
_ONCE = frozenset({"html", "head", "body"})
_IN_SCOPE = _SPECIAL - _BOUNDARY
_NOTHING: frozenset[str] = frozenset()
# Inside <svg> or <math> elements are foreign (kept on the stack as "^name"): there "/>"
# closes a tag, and these start tags break out into HTML again (HTML5 13.2.6.5).
_BREAKOUT = _names(
    "b big blockquote body br center code dd div dl dt em embed h1 h2 h3 h4 h5 h6 head hr "
    "i img li listing menu meta nobr ol p pre ruby s small span strong strike sub sup "
    "table tt u ul var font"
)
# Foreign elements whose content is HTML again.
_INTEGRATION = frozenset(
    {"^foreignobject", "^desc", "^title", "^annotation-xml", "^mi", "^mo", "^mn", "^ms"}
    | {"^mtext"}
)
_WALK = 24  # how far down the stack a search for a matching element goes
_raw_ends: dict[str, re.Pattern[str]] = {}


def _pop_to(stack: list[str], names: frozenset[str], passable: frozenset[str]) -> None:
    """Pop down to and including the nearest element named in ``names``, stepping over
    non-special elements and ``passable`` ones; give up at anything else."""
    for i in range(len(stack) - 1, max(-1, len(stack) - 1 - _WALK), -1):
        name = stack[i]
        if name in names:
            del stack[i:]
            return
        if name in _SPECIAL and name not in passable:
            return


def _end_tag(stack: list[str], name: str, passable: frozenset[str]) -> None:
    """An end tag: pop to its element if it is near the top, else ignore it."""
    foreign = "^" + name
    for i in range(len(stack) - 1, max(-1, len(stack) - 1 - _WALK), -1):
        open_name = stack[i]
        if open_name in (name, foreign):
            del stack[i:]
            return
        if open_name in _SPECIAL and open_name not in passable:
            return


def _close_p(stack: list[str]) -> None:
    for i in range(len(stack) - 1, max(-1, len(stack) - 1 - _WALK), -1):
        name = stack[i]
        if name == "p":
            del stack[i:]
            return
        if name in _BOUNDARY or name == "button":
            return


def tag_count_cut(text: str, max_tags: int = MAX_TAGS) -> int | None:
    """Where the ``max_tags``-th tag starts, or None if the page has fewer."""
    if text.count("<") <= max_tags:
        return None
    seen, pos, step = 0, 0, 1 << 16
    while True:
        n = text.count("<", pos, pos + step)
        if seen + n >= max_tags:
            break
        seen += n
        pos += step
    for _ in range(max_tags - seen):
        pos = text.index("<", pos) + 1
    return pos - 1


def nesting_cut(text: str, limit: int = MAX_NESTING) -> tuple[int, str] | None:
    """Where ``text`` first nests deeper than ``limit`` elements (or puts more than
    MAX_OPTIONS options in one <select>), and why; None if it never does."""
    if text.count("<") - text.count("</") <= max(limit, SCAN_ABOVE):
        return None
    stack: list[str] = []
    options = 0  # <option>/<optgroup> since the last <select>
    skip_to = 0  # inside a comment or raw text until here
    for m in _TAG.finditer(text):
        if m.start() < skip_to:
            continue
        raw_name = m.group(2)
        if raw_name is None:  # a comment
            end = text.find("-->", m.end())
            if end < 0:
                return None
            skip_to = end + 3
            continue
        name = raw_name.lower()
        if m.group(1):  # an end tag
            if stack and stack[-1] == name:  # the common case: it closes the current one
                stack.pop()
                continue
            # A special element's end tag closes it in scope (stepping over anything
            # but a boundary); any other steps over non-special elements only.
            _end_tag(stack, name, _IN_SCOPE if name in _SPECIAL else _NOTHING)
            continue
        top = stack[-1] if stack else ""
        if top[:1] == "^" and top not in _INTEGRATION:  # in foreign content
            if name in _BREAKOUT:
                while stack and stack[-1][:1] == "^":
                    stack.pop()
            else:
                if not m.group(3).endswith("/"):
                    stack.append("^" + name)
                    if len(stack) > limit:
                        return m.start(), f"elements nested deeper than {limit}"
                continue
        if name in _VOID:
            continue
        if name in _RAW:
            end_tag = _raw_ends.get(name)
            if end_tag is None:
                end_tag = _raw_ends[name] = re.compile("</" + name, re.I)
            found = end_tag.search(text, m.end())
            if found is None:
                return None  # the rest of the page is this element's text
            skip_to = found.start()
            continue
        if name == "plaintext":
            return None  # the rest of the page is text
        if name in _ONCE and name in stack[:3]:
            continue
        if name == "select":
            options = 0
        elif name in ("option", "optgroup"):
            options += 1
            if options > MAX_OPTIONS:
                return m.start(), f"more than {MAX_OPTIONS} options in one <select>"
        if name in _CLOSES_P:
            _close_p(stack)
        family = _FAMILIES.get(name)
        if family is not None:
            _pop_to(stack, *family)
        if name in _FOREIGN:
            if m.group(3).endswith("/"):
                continue
            name = "^" + name
        stack.append(name)
        if len(stack) > limit:
            return m.start(), f"elements nested deeper than {limit}"
    return None


def segments(text: str, tags: int = SEGMENT_TAGS) -> list[int]:
    """Where to split ``text`` into pieces of about ``tags`` tags each, for parsing one
    piece at a time: offsets of tags outside comments and raw text (a split there leaves
    every tag whole), in order, 0 first.

    Each piece parsed on its own starts again at depth 0, so no parse nests deeper than
    about ``tags`` (lexbor's cost is quadratic in depth) and each tree stays small, while
    every tag of the page is still parsed: what the pieces lose is only the structure
    across a split, which links, <base>, <title> and <meta> do not need. A comment or raw
    text holding more than ``tags`` tags, or never closed, is split like markup: which it
    is depends on context (``<style>`` in ``<svg>`` is markup), and a page must not get
    an unbounded piece by claiming it.
    """
    cuts = [0]
    seen = 0
    skip_to = 0
    for m in _TAG.finditer(text):
        if m.start() < skip_to:
            continue
        seen += 1
        if seen > tags:
            cuts.append(m.start())
            seen = 1
        raw_name = m.group(2)
        if raw_name is None:  # a comment
            end = text.find("-->", m.end())
        elif m.group(1) or (name := raw_name.lower()) not in _RAW:
            continue
        else:
            end_tag = _raw_ends.get(name)
            if end_tag is None:
                end_tag = _raw_ends[name] = re.compile("</" + name, re.I)
            found = end_tag.search(text, m.end())
            end = found.start() if found is not None else -1
        if end >= 0 and text.count("<", m.end(), end) <= tags:
            skip_to = end
    return cuts
