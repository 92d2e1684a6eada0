"""Whether a page is built by JavaScript (``--render auto``, and the hint of a static crawl).

Two parts, neither importing a browser:

- :func:`script_built` reads a page as sent and says why it looks built by script (an app
  shell whose body is empty or holds only scripts, a ``<noscript>`` asking for
  JavaScript, little text and few links beside scripts), or None. A page with text and
  links that merely carries scripts (analytics) is not script-built.
- :class:`RenderLearner` remembers, per host and first path segment, whether rendering
  pages that look static there found materially more: the first pages of a prefix are
  rendered both ways (probes); one that gains makes the prefix "render", probes that
  gain nothing make it "static"; while they render, the prefix's other pages wait for
  that verdict (bounded: past a probe's deadline they are probed too). Bounded (least
  recently used prefixes are forgotten) and thread-safe.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "RenderHook", "RenderLearner", "Verdict", "gains", "has_script", "measure", "script_built",
]  # fmt: skip

# Crawler(render_hook=...): an async callable given the Playwright page (an object of
# the browser's loop thread) before its DOM is read.
RenderHook = Callable[[Any], Awaitable[object]]

# Only the start of a page is looked at: an app shell is small, and a huge page is not one.
_LOOK_BYTES = 256 * 1024
# Below these a page holding scripts has too little of its own to be the whole page.
_THIN_TEXT = 200
_THIN_LINKS = 3
# A <noscript> that asks for JavaScript marks a script-built page unless the page has
# this much text of its own and a few links (_THIN_LINKS): a full page whose comments or
# a widget need JavaScript (Disqus's "Please enable JavaScript to view the comments").
_NOSCRIPT_TEXT = 1500

_WINDOW = 2048
_SCRIPT = re.compile(r"<script\b", re.I)
# A tag's name ends at whitespace, "/" or ">": <svg-icon> is a custom element, not SVG.
_OPEN = re.compile(r"<(script|style|noscript|template|svg)(?=[\s/>])|<!--", re.I)
_ASKS_JS = re.compile(r"javascript|enable\s+js|js\s+(?:is\s+)?(?:required|disabled)", re.I)
_CLOSERS = {
    name: re.compile("-->" if name == "!--" else f"</{name}(?=[\\s/>])[^>]*>?", re.I)
    for name in ("script", "style", "noscript", "template", "svg", "!--")
}
# The rest of a start tag, up to its ">" (a quoted value may hold one); no match: the
# tag is never closed.
_TAG_REST = re.compile(r"""(?:[^>"']|"[^"]*"|'[^']*')*>""")
# A "/" that ends an unquoted value (<svg a=b/>) is the value's, not a self-closing mark.
_UNQUOTED_SLASH = re.compile(r"=\s*[^\s\"'>]*/>$")
_EMPTY_COMMENT = re.compile("-?>")  # after "<!--": <!--> and <!---> end there
_TAG = re.compile(r"<[^<>]*>")
_SPACE = re.compile(r"\s+")
_ANCHOR = re.compile(r"<a\b[^<>]*\bhref\s*=", re.I)
_BODY = re.compile(r"<body\b[^<>]*>", re.I)
_HEAD_END = re.compile(r"</head\s*>", re.I)


def _split(html: str) -> tuple[str, list[str]]:
    """The body with scripts, styles, templates, SVG and comments cut out, and the
    contents of its <noscript> elements. One pass (an unclosed element runs to the end):
    linear in the page, whatever a hostile one holds. Read as a browser reads it: a
    self-closing ``<svg .../>`` is empty (SVG is foreign content, where "/>" closes), while
    ``<script .../>`` (or style, noscript, template) still runs to its end tag (HTML
    ignores the "/"); ``<!-->`` and ``<!--->`` are whole (empty) comments."""
    found = _BODY.search(html) or _HEAD_END.search(html)
    if found:
        html = html[found.end() :]
    kept: list[str] = []
    noscripts: list[str] = []
    pos = 0
    while True:
        opening = _OPEN.search(html, pos)
        if opening is None:
            kept.append(html[pos:])
            break
        kept.append(html[pos : opening.start()])
        kept.append(" ")
        name = opening.group(1)
        start = opening.end()
        if name is None:
            empty = _EMPTY_COMMENT.match(html, start)
            if empty is not None:
                pos = empty.end()
                continue
        elif name.lower() == "svg":
            rest = _TAG_REST.match(html, start)
            if rest is None:
                break  # a start tag never closed: the rest of the page is in it
            tag = html[opening.start() : rest.end()]
            if tag.endswith("/>") and _UNQUOTED_SLASH.search(tag) is None:
                pos = rest.end()  # <svg/>, <svg ... />: an empty element
                continue
        closer = _CLOSERS["!--" if name is None else name.lower()].search(html, start)
        end = closer.start() if closer else -1
        if name is not None and name.lower() == "noscript":
            noscripts.append(html[start : end if end >= 0 else len(html)])
        if closer is None:
            break
        pos = closer.end()
    return "".join(kept), noscripts


def _text(body: str) -> str:
    return _SPACE.sub(" ", _TAG.sub(" ", body)).strip()


def measure(html: str) -> tuple[int, int]:
    """(visible text length, links) of a page: a rough measure, no parse tree."""
    body, _ = _split(html[:_LOOK_BYTES])
    return len(_text(body)), len(_ANCHOR.findall(body))


def has_script(html: str) -> bool:
    return _SCRIPT.search(html) is not None


def script_built(html: str) -> str | None:
    """Why ``html`` (a page as sent) looks built by script: ``"app-shell"``,
    ``"noscript"`` or ``"thin"``; None for a page that stands on its own (or has no
    script at all)."""
    html = html[:_LOOK_BYTES]
    if _SCRIPT.search(html) is None:
        return None  # nothing could build it
    body, noscripts = _split(html)
    links = len(_ANCHOR.findall(body))
    if any(_ASKS_JS.search(_TAG.sub(" ", n)) for n in noscripts):
        # Judged on the text and the links together: a long article with a handful of
        # links and a comments widget's <noscript> is a page of its own.
        full = links >= _THIN_LINKS and _text_length(body, _NOSCRIPT_TEXT) >= _NOSCRIPT_TEXT
        return None if full else "noscript"
    # The text is measured only as far as a rule needs: most pages stop early.
    text = _text_length(body, _THIN_TEXT)
    if text < 20 and links == 0:
        return "app-shell"
    if text < _THIN_TEXT and links < _THIN_LINKS:
        return "thin"
    return None


def _text_length(body: str, enough: int) -> int:
    """The visible text's length, counted up to ``enough`` (a window at a time)."""
    total = 0
    for start in range(0, len(body), _WINDOW):
        window = _TAG.sub("", body[start : start + _WINDOW])
        # Whitespace counted off, not substituted away: several times quicker.
        total += len(window) - sum(window.count(c) for c in " \n\t\r")
        if total >= enough:
            break
    return total


def gains(before: tuple[int, int], after: tuple[int, int]) -> bool:
    """Whether a render found materially more than the page as sent: (text length,
    links) before and after. A few more links, or half as much text again, and at least
    a few hundred characters."""
    text0, links0 = before
    text1, links1 = after
    more_links = links1 - links0 >= max(3, links0 // 5)
    more_text = text1 - text0 >= max(200, text0 // 2)
    return more_links or more_text


@dataclass(slots=True)
class _Prefix:
    probes: int = 0  # probes handed out (some may still be running)
    answered: int = 0
    render: bool | None = None  # the verdict, once known


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a page that looks static: ``render`` it (the prefix was learned
    to need it), ``probe`` it (render it both ways and tell :meth:`RenderLearner.learn`),
    or neither."""

    render: bool = False
    probe: bool = False


class RenderLearner:
    """Per prefix (scheme, host and first path segment), whether pages that look static
    gain by rendering. At most ``max_prefixes`` are remembered (the least recently used
    are forgotten, and learned again if seen again).

    A page of a prefix whose probes are all out waits for their verdict (``wait``
    seconds at most, then it is probed too): recorded static meanwhile, a folder of
    pages that scripts complete would lose every page seen while its first ones were
    still rendering, for good (a page is fetched once). Probing every such page instead
    would render, in the common case (analytics on static pages), every page the workers
    hold when a folder is first met, for nothing. The wait holds no browser slot or lock:
    the probes it waits for need neither from it. Nothing but the learner's own state is
    done under its lock."""

    def __init__(self, probes: int = 2, max_prefixes: int = 10_000) -> None:
        self._probes = probes
        self._max = max_prefixes
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a probe answered or came back
        self._prefixes: OrderedDict[str, _Prefix] = OrderedDict()

    @staticmethod
    def prefix(url: str) -> str:
        parts = urlsplit(url)
        first = parts.path.lstrip("/").split("/", 1)
        # A page at the top level ("/about") shares the host's prefix: only a folder
        # ("/blog/...") is a prefix of its own.
        segment = first[0] if len(first) > 1 else ""
        return f"{parts.scheme}://{parts.netloc.lower()}/{segment}"

    def verdict(self, url: str, wait: float = 0.0) -> Verdict:
        """Render, probe, or neither. While the prefix's probes are all out, waits up to
        ``wait`` seconds for their verdict (or for one to come back unanswered, handed
        out again here); past that the page is a probe as well (rendered both ways, its
        answer counted like the others'): never left static while nothing is known."""
        key = self.prefix(url)
        deadline = time.monotonic() + wait
        with self._lock:
            while True:
                # Looked up again after each wait: the prefix may have been forgotten.
                entry = self._entry(key)
                if entry.render is not None:
                    return Verdict(render=entry.render)
                if entry.probes < self._probes:
                    entry.probes += 1
                    return Verdict(probe=True)
                left = deadline - time.monotonic()
                if left <= 0:
                    entry.probes += 1  # an extra probe, given back like the others
                    return Verdict(probe=True)
                self._changed.wait(left)

    def _entry(self, key: str) -> _Prefix:
        entry = self._prefixes.get(key)
        if entry is None:
            entry = self._prefixes[key] = _Prefix()
            while len(self._prefixes) > self._max:
                self._prefixes.popitem(last=False)
        else:
            self._prefixes.move_to_end(key)
        return entry

    def learn(self, url: str, gained: bool | None) -> None:
        """A probe's answer: ``gained`` (rendering found materially more), or None when
        the render failed (the probe is handed out again)."""
        key = self.prefix(url)
        with self._lock:
            # Pages waiting on the prefix look again, even if it was forgotten meanwhile
            # (they start it afresh).
            self._changed.notify_all()
            entry = self._prefixes.get(key)
            if entry is None or entry.render is not None:
                return
            if gained is None:
                entry.probes -= 1
                return
            entry.answered += 1
            if gained:
                entry.render = True
            elif entry.answered >= self._probes:
                entry.render = False

    def __len__(self) -> int:
        with self._lock:
            return len(self._prefixes)
