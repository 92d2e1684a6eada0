"""Whether a page is built by JavaScript (``--render auto``, and the hint of a static crawl).

Two parts, neither importing a browser:

- :func:`script_built` reads a page as sent and says why it looks built by script (an app
  shell whose body is empty or holds only scripts, a ``<noscript>`` asking for
  JavaScript, little text and few links beside scripts), or None. A page with text and
  links that merely carries scripts (analytics) is not script-built.
- :class:`RenderLearner` remembers, per host and first path segment, whether rendering
  pages that look static there found materially more: the first pages of a prefix are
  rendered both ways (probes); one that gains makes the prefix "render", probes that
  gain nothing make it "static". Bounded (least recently used prefixes are forgotten)
  and thread-safe.
"""

from __future__ import annotations

import re
import threading
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
# this much of its own (a full page that only prefers JavaScript).
_NOSCRIPT_TEXT = 1500
_NOSCRIPT_LINKS = 10

_WINDOW = 2048
_SCRIPT = re.compile(r"<script\b", re.I)
_OPEN = re.compile(r"<(script|style|noscript|template|svg)\b|<!--", re.I)
_ASKS_JS = re.compile(r"javascript|enable\s+js|js\s+(?:is\s+)?(?:required|disabled)", re.I)
_CLOSERS = {
    name: re.compile("-->" if name == "!--" else f"</{name}", re.I)
    for name in ("script", "style", "noscript", "template", "svg", "!--")
}
_TAG = re.compile(r"<[^<>]*>")
_SPACE = re.compile(r"\s+")
_ANCHOR = re.compile(r"<a\b[^<>]*\bhref\s*=", re.I)
_BODY = re.compile(r"<body\b[^<>]*>", re.I)
_HEAD_END = re.compile(r"</head\s*>", re.I)


def _split(html: str) -> tuple[str, list[str]]:
    """The body with scripts, styles, templates, SVG and comments cut out, and the
    contents of its <noscript> elements. One pass (an unclosed element runs to the end):
    linear in the page, whatever a hostile one holds."""
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
        name = opening.group(1)
        closer = _CLOSERS["!--" if name is None else name.lower()].search(html, opening.end())
        end = closer.start() if closer else -1
        if name is not None and name.lower() == "noscript":
            noscripts.append(html[opening.end() : end if end >= 0 else len(html)])
        if end < 0:
            break
        pos = closer.end() if closer else len(html)
        kept.append(" ")
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
    asking = any(_ASKS_JS.search(_TAG.sub(" ", n)) for n in noscripts)
    if asking and links < _NOSCRIPT_LINKS:
        return "noscript"
    # The text is measured only as far as a rule needs: most pages stop early.
    text = _text_length(body, _NOSCRIPT_TEXT if asking else _THIN_TEXT)
    if text < 20 and links == 0:
        return "app-shell"
    if asking and text < _NOSCRIPT_TEXT:
        return "noscript"
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
    are forgotten, and learned again if seen again)."""

    def __init__(self, probes: int = 2, max_prefixes: int = 10_000) -> None:
        self._probes = probes
        self._max = max_prefixes
        self._lock = threading.Lock()
        self._prefixes: OrderedDict[str, _Prefix] = OrderedDict()

    @staticmethod
    def prefix(url: str) -> str:
        parts = urlsplit(url)
        first = parts.path.lstrip("/").split("/", 1)
        # A page at the top level ("/about") shares the host's prefix: only a folder
        # ("/blog/...") is a prefix of its own.
        segment = first[0] if len(first) > 1 else ""
        return f"{parts.scheme}://{parts.netloc.lower()}/{segment}"

    def verdict(self, url: str) -> Verdict:
        key = self.prefix(url)
        with self._lock:
            entry = self._prefixes.get(key)
            if entry is None:
                entry = self._prefixes[key] = _Prefix()
                while len(self._prefixes) > self._max:
                    self._prefixes.popitem(last=False)
            else:
                self._prefixes.move_to_end(key)
            if entry.render is not None:
                return Verdict(render=entry.render)
            if entry.probes < self._probes:
                entry.probes += 1
                return Verdict(probe=True)
            return Verdict()  # probes under way: not rendered meanwhile

    def learn(self, url: str, gained: bool | None) -> None:
        """A probe's answer: ``gained`` (rendering found materially more), or None when
        the render failed (the probe is handed out again)."""
        key = self.prefix(url)
        with self._lock:
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
