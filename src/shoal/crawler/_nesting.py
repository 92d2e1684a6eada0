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
from collections.abc import Iterator

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


# A tag from its "<" to its ">", as the HTML tokenizer reads it: a quote opens an
# attribute value only right after "=" (a ">" inside "1>0" does not end the tag), and
# every quantifier is possessive so a tag that never ends costs one scan to the end of
# the page, not one per backtrack. An attribute name may start with "=" (then it is a
# name, not a value: '<a ="x>' ends at its ">").
_TAG = re.compile(
    r"<(/?)([A-Za-z][^\t\n\f\r />]*+)("
    r"(?:[\t\n\f\r /]++"
    r"|[^\t\n\f\r />][^\t\n\f\r />=]*+"
    r"(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+"
    r"""(?:"[^"]*+"|'[^']*+'|[^\t\n\f\r >"'][^\t\n\f\r >]*+|(?=>))"""
    r"|(?![\t\n\f\r ]*+=))"
    r")*+)>"
)
# A plain tag, as ``_TAG`` reads it: no "<", "=" or quote in names, "=" right after a
# name, a quote only right after "="; else the "<" where something else starts, read by
# ``_TAG``. No repeat passes a "<", so a failed try costs no more than the text to it.
_SIMPLE_TAG = re.compile(
    r"<(/?)([A-Za-z][^\t\n\f\r />]*+)("
    r"""(?:[\t\n\f\r /]++|[^<>"'=\t\n\f\r /]++"""
    r"""(?:=(?:"[^"<]*+"|'[^'<]*+'|[^\t\n\f\r <>"'=]*+))?+)*+)>"""
    r"|<"
)
# Where markup may start: a "<" followed by anything else is text.
_MARKUP = re.compile(r"<[A-Za-z!?/]")
_COMMENT_END = re.compile(r"--!?>")
_ASCII_LETTER = re.compile(r"[A-Za-z]")
_GT = re.compile(">")
_CDATA_END = re.compile(r"]]>")
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
# Start tags that change how segments reads what follows (outside foreign content).
_MODAL = _RAW | _FOREIGN | {"plaintext"}
_WALK = 24  # how far down the stack a search for a matching element goes
_raw_ends: dict[str, re.Pattern[str]] = {}


def _raw_end(name: str) -> re.Pattern[str]:
    """The end tag that closes raw text ``name``: "</name" then a space, "/" or ">"
    ("</scripts>" does not close a script)."""
    pattern = _raw_ends.get(name)
    if pattern is None:
        pattern = _raw_ends[name] = re.compile("</" + name + "(?=[\t\n\f\r />])", re.I)
    return pattern


def _tokens(text: str, resume: list[int]) -> Iterator[tuple[int, int, re.Match[str] | None]]:
    """The comments and tags of ``text`` in order, as (start, end, tag match or None for
    a comment). Bogus comments (``<!x>``, ``<?x>``, ``</ x>``) end at the first ">".

    Stops where a comment or tag runs to the end of the page (the tokenizer reads all the
    rest as part of it), so every character is scanned about once whatever the page: a
    search that finds no end from here finds none from later either. A caller skips raw
    text by setting ``resume[0]`` to where scanning goes on.
    """
    pos = 0
    while True:
        pos = max(pos, resume[0])
        # Simple tags, most of a page, in one C loop; anything else is read below.
        for fast in _SIMPLE_TAG.finditer(text, pos):
            if fast.group(2) is None:
                pos = fast.start()
                break
            pos = fast.end()
            yield fast.start(), pos, fast
            if resume[0] > pos:
                break
        else:
            pos = len(text)
        pos = max(pos, resume[0])
        found = _MARKUP.search(text, pos)
        if found is None:
            return
        lt = found.start()
        c = text[lt + 1]
        if c not in "!?" and (c != "/" or _ASCII_LETTER.match(text, lt + 2)):
            tag = _TAG.match(text, lt)
            if tag is None:
                return  # a tag that never ends: the rest of the page is inside it
            pos = tag.end()
            yield lt, pos, tag
        elif c == "/" and text.startswith(">", lt + 2):  # "</>" is dropped
            pos = lt + 3
        elif text.startswith("<!--", lt):
            if text.startswith(">", lt + 4):  # "<!-->" and "<!--->" are whole comments
                pos = lt + 5
            elif text.startswith("->", lt + 4):
                pos = lt + 6
            else:
                close = _COMMENT_END.search(text, lt + 4)
                if close is None:
                    return  # the rest of the page is this comment
                pos = close.end()
            yield lt, pos, None
        else:  # a bogus comment: "<!x", "<?x", "</ x" up to the first ">"
            close = _GT.search(text, lt + 2)
            if close is None:
                return
            pos = close.end()
            yield lt, pos, None


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
    resume = [0]  # past raw text
    for start, _, m in _tokens(text, resume):
        if m is None:  # a comment
            continue
        name = m.group(2).lower()
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
                        return start, f"elements nested deeper than {limit}"
                continue
        if name in _VOID:
            continue
        if name in _RAW:
            found = _raw_end(name).search(text, m.end())
            if found is None:
                return None  # the rest of the page is this element's text
            resume[0] = found.start()
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
                return start, f"more than {MAX_OPTIONS} options in one <select>"
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
            return start, f"elements nested deeper than {limit}"
    return None


def segments(text: str, tags: int = SEGMENT_TAGS) -> list[int]:
    """Where to split ``text`` into pieces of about ``tags`` tags each, for parsing one
    piece at a time: offsets of tags and comments outside raw text (a split there leaves
    every tag, comment and raw-text element whole), in order, 0 first.

    Each piece parsed on its own starts again at depth 0, so no parse nests deeper than
    about ``tags`` (lexbor's cost is quadratic in depth) and each tree stays small, while
    every tag of the page is still parsed: what the pieces lose is only the structure
    across a split, which links, <base>, <title> and <meta> do not need.

    Every "<" counts towards a piece's ``tags``, those in comments, attribute values and
    raw text too: which raw text is text depends on context (``<style>`` in ``<svg>`` is
    markup), and a page must not get an unbounded piece by claiming it. A comment or
    raw-text element (or the ``<plaintext>`` rest of a page) that would overfill a piece
    starts a new one instead, whatever it holds: at the start of a document it is text in
    any parser, and text builds no nodes. So script and comment content is never parsed
    as markup, and the work is linear in the page.
    """
    cuts = [0]
    seen = 0
    resume = [0]  # past raw text
    # Elements open in <svg> or <math> since the last cut (as "^name"): there <style>,
    # <script> and <title> are markup, and <![CDATA[ is text up to "]]>". A cut starts
    # lexbor afresh in HTML, and this model with it.
    foreign: list[str] = []

    def extent(start: int, end: int, m: re.Match[str] | None) -> tuple[int, bool]:
        """Where the construct at ``start`` ends (raw text included) and whether it is
        text whatever the context; opens or closes foreign elements on the way."""
        in_foreign = bool(foreign) and foreign[-1] not in _INTEGRATION
        if m is None:
            if in_foreign and text.startswith("<![CDATA[", start):
                found = _CDATA_END.search(text, start + 9)
                resume[0] = found.end() if found is not None else len(text)
                return resume[0], False
            return end, True
        name = m.group(2).lower()
        if m.group(1):  # an end tag closes the foreign element it names, if near
            for i in range(len(foreign) - 1, max(-1, len(foreign) - 1 - _WALK), -1):
                if foreign[i] == "^" + name:
                    del foreign[i:]
                    break
            return end, False
        opens = not m.group(3).endswith("/")
        if in_foreign:
            if name in _BREAKOUT:
                foreign.clear()
            elif opens:
                foreign.append("^" + name)
            return end, False
        if name in _FOREIGN:
            if opens:
                foreign.append("^" + name)
        elif name in _RAW:
            found = _raw_end(name).search(text, end)
            resume[0] = found.start() if found is not None else len(text)
            return resume[0], True
        elif name == "plaintext":
            resume[0] = len(text)
            return resume[0], True
        return end, False

    for start, end, m in _tokens(text, resume):
        was_foreign = bool(foreign)  # then read it again in HTML after a cut
        if m is not None and not was_foreign and (m.group(1) or m.group(2).lower() not in _MODAL):
            stop, text_only = end, False  # nearly every tag: nothing to model
        else:
            stop, text_only = extent(start, end, m)
        weight = text.count("<", start, stop)
        if seen and seen + weight > tags:
            cuts.append(start)
            seen = 0
            foreign.clear()
            if was_foreign:
                resume[0] = start
                stop, text_only = extent(start, end, m)
                weight = text.count("<", start, stop)
        if text_only and not seen:
            seen = 1 if m is None else text.count("<", start, end)
        else:
            seen += weight
    return cuts
