"""Rendering pages in a headless Chromium (``--render always``): the browser fetcher.

A :class:`BrowserFetcher` is a :class:`~shoal.crawler.PageFetcher`. robots.txt, sitemaps
and every page's first response go over plain HTTP (the crawl's :class:`HTTPFetcher`, its
redirects vetted hop by hop by the gate as in a static crawl); only a 2xx HTML page is then
loaded in the browser, its document served from that very response (the server is not
asked twice). What the browser asks for after that is served by shoal too:

- every request of every page goes through the context's route handler; the browser's
  own network is pointed at a dead proxy and never used;
- a later navigation of the page (a script setting ``location``, a meta refresh) must pass
  ``FetchRequest.gate`` before it is requested, then is fetched over the crawl's
  transport; one the gate refuses is aborted and the page stays where it was. A
  navigation to something that is not HTML (a download) ends the render there: the
  record is that response's, never written to disk;
- any other request (script, XHR, stylesheet, iframe) must pass ``FetchRequest.side``;
  a GET is fetched over the crawl's transport (its ``max_bytes``, timeouts and
  ``deny_private`` at connect), anything else through Playwright's request API;
  images, fonts and media are refused unless ``--render-block none``; WebSockets are closed;
- dialogs are dismissed, popups closed (their URLs become links of the page), downloads
  refused;
- a page's own fetch and every request its browser makes to a host take one of that
  host's ``--per-host`` slots (:class:`_HostSlots`), so pages and subresources together
  stay within it. In a shared crawl (``FetchSetup.shared``: ``--redis``) those slots
  would be each process's, while the frontier bounds the leased pages of a host across
  all of them: there a page's requests to its own host (the leased URL's) go out one at
  a time under its lease (:class:`_PageLease`) and take no slot, so that host sees at
  most one request per leased page; requests to other hosts keep this process's slots.
  The crawl's cookie jar goes with the browser's requests and takes
  their Set-Cookie; with a WARC output each response the browser loaded is kept for the
  page's commit (``Fetched.archive``, bounded per page);
- ``--render-memory``: a new page waits while the browser's process tree is over the
  budget and another page is rendering (:class:`_MemoryBudget`).

One thread owns Playwright (its objects are not thread-safe) and runs an asyncio loop;
crawler workers hand it pages with ``run_coroutine_threadsafe`` and wait for the result.
Each page has a hard wall-clock deadline (``render_timeout``): past it the page is closed,
then its context if that does not answer, then the browser is killed and launched again;
the worker itself stops waiting a little later whatever the loop does. Contexts are
recycled every ``_CONTEXT_PAGES`` pages (memory comes back only when a context closes) and
each tab's script heap is capped.

Playwright talks to the browser over a pipe (``--remote-debugging-pipe``), never a
DevTools port: no other local user can drive it, and no WebSocket caps the size of what a
page is served. The browser cannot outlive shoal: Playwright's driver starts a small reaper
process in its place, which starts the browser in a session (so one process group holds
the browser's tree) of its own with the driver's pipe, and kills that group when shoal
ends (a pidfd on shoal's pid: SIGKILL included), when shoal asks (SIGTERM: at the end of
the run, on Ctrl-C, on an error, from the watchdog) or when the browser ends. The browser
also gets PR_SET_PDEATHSIG from the reaper. Its profile and Playwright's artifacts are a
temporary directory the reaper removes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import html
import importlib.util
import inspect
import logging
import os
import queue
import select
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._errors import ShoalError, UsageError
from ..http import ErrorKind, Transport, TransportError
from ..state import host_key
from ._cookies import FetchCookies
from ._fetch import Fetched, FetchRequest, FetchSetup, HTTPFetcher
from ._html import decode_body, is_html
from ._options import CrawlOptions
from ._page import Page as CrawlPage  # "Page" is Playwright's here
from ._page import product_token
from ._scripted import RenderHook, RenderLearner, gains, has_script, measure, script_built
from .frontier import JobKind

if TYPE_CHECKING:  # Playwright is loaded only when a render crawl starts
    from playwright.async_api import Browser, BrowserContext, Page, Playwright, Request, Route

__all__ = ["BrowserFetcher", "RenderError", "check_render", "find_browser"]

logger = logging.getLogger(__name__)

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FIXES = "apt-get install chromium (or give --browser PATH), and pip install 'shoal[render]'"
# Pages per browser context before it is replaced: a context's memory is freed only
# when it closes (playwright #6319).
_CONTEXT_PAGES = 50
# Each tab's V8 old space, MB: a script that allocates without end dies in seconds.
_JS_HEAP_MB = 512
# How long a page, then a context, gets to close before the next step of the watchdog.
_CLOSE_WAIT = 5.0
# The worker stops waiting this long after a page's deadline, whatever the loop does.
_WORKER_MARGIN = 3 * _CLOSE_WAIT + 5.0
_LAUNCH_WAIT = 30.0
# How long a kept tab gets to leave its last page for the next (its navigation committed)
# before the next page takes a new tab.
_LET_GO_WAIT = 5.0
# A wait in the page asked again after this many navigations, at most (a refresh loop).
_NAVIGATIONS_FOLLOWED = 20
# How long the browser's reaper gets to end after SIGTERM, then after SIGKILL.
_KILL_WAIT = 10.0
_MAX_PROFILE_PATH = 60
# Headers shoal's transport sets itself, or that describe the browser's framing.
_DROP_REQUEST = frozenset(
    {"host", "connection", "content-length", "accept-encoding", "transfer-encoding",
     "keep-alive", "upgrade", "te", "trailer", "proxy-authorization", "cookie",
     "user-agent"}
)  # fmt: skip
# A page's subresources kept for a WARC: at most this many responses and bytes of
# bodies; past either, the rest of the page's are served but not archived.
_ARCHIVE_MAX_COUNT = 1_000
_ARCHIVE_MAX_BYTES = 64 * 1024 * 1024
# The transport decoded the body: what described its encoding no longer holds.
_DROP_RESPONSE = frozenset({"content-encoding", "content-length", "transfer-encoding"})

# The reaper: Playwright's driver starts it as "the browser", the driver's pipe on fds 3
# and 4. It starts the browser in a session (process group) of its own with that pipe,
# then waits for shoal to end (a pidfd: SIGKILL of shoal included), for the browser to
# end, or for SIGTERM (shoal's own kill); any of these and it kills the browser's whole
# group and removes its directory. Standard library only.
_REAPER = r"""
import ctypes, os, select, shutil, signal, subprocess, sys
work = sys.argv[1]
parent = os.getpid()
def pdeathsig():
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    if os.getppid() != parent:  # the reaper died before the prctl
        os._exit(1)
wake_r, wake_w = os.pipe()
os.set_blocking(wake_w, False)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGTERM, lambda *a: None)
try:
    shoal = os.pidfd_open(int(os.environ.pop("SHOAL_PID")))
    with open(os.path.join(work, "reaper.tmp"), "w") as f:
        f.write(str(parent))
    os.rename(os.path.join(work, "reaper.tmp"), os.path.join(work, "reaper"))
    child = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             pass_fds=(3, 4), start_new_session=True, preexec_fn=pdeathsig)
except BaseException:
    shutil.rmtree(work, ignore_errors=True)
    raise
os.close(3)  # the browser's now: its end closes the pipe, not the reaper's
os.close(4)
try:
    select.select([shoal, os.pidfd_open(child.pid), wake_r], [], [])
except OSError:
    pass
try:
    os.killpg(child.pid, signal.SIGTERM)  # a moment to end cleanly, then for sure
except OSError:
    pass
try:
    child.wait(2)
except subprocess.TimeoutExpired:
    pass
try:
    os.killpg(child.pid, signal.SIGKILL)
except OSError:
    pass
child.wait()
shutil.rmtree(work, ignore_errors=True)
"""


# window.open records the URL (a link of the page) and opens nothing.
_POPUP_SCRIPT = """(() => {
  // No WebRTC: its UDP goes around the route handler and the proxy (any address).
  for (const name of ['RTCPeerConnection', 'webkitRTCPeerConnection', 'RTCDataChannel']) {
    try { Object.defineProperty(window, name, {value: undefined}); } catch (e) {}
  }
  const opened = [];
  Object.defineProperty(window, '__shoalPopups', {value: opened});
  window.open = function (url) {
    try { if (url) opened.push(String(new URL(url, document.baseURI))); } catch (e) {}
    return null;
  };
  // What the render's waits use, taken before any script of the page runs: a page that
  // replaces addEventListener, MutationObserver or querySelector cannot hold them up.
  const P = Promise, on = EventTarget.prototype.addEventListener;
  const query = Document.prototype.querySelector, Observer = MutationObserver;
  const observe = Observer.prototype.observe, disconnect = Observer.prototype.disconnect;
  const later = setTimeout, clear = clearTimeout, frame = requestAnimationFrame;
  const unframe = cancelAnimationFrame, stop = window.stop;
  const loaded = new P(resolve => on.call(window, 'load', () => resolve(true), {once: true}));
  // Mutations come in batches (one per task at most): one query a batch.
  const appears = selector => query.call(document, selector) !== null || new P(resolve => {
    const seen = new Observer(() => {
      if (query.call(document, selector) !== null) { disconnect.call(seen); resolve(true); }
    });
    observe.call(seen, document, {childList: true, subtree: true, attributes: true});
  });
  // A page left in a kept tab for the next: no more loads, timers or frames of its own
  // (ids come in order: every one below a new one is the page's), nothing of it kept.
  const quiet = () => {
    stop.call(window);
    const last = later.call(window, () => {}, 0);
    for (let id = last; id > 0 && id > last - 200000; id--) clear.call(window, id);
    const lastFrame = frame.call(window, () => {});
    for (let id = lastFrame; id > 0 && id > lastFrame - 200000; id--) unframe.call(window, id);
    // Its unload handlers run as the next page comes: what they send is not sent.
    const none = () => P.reject(new TypeError('the page was left'));
    for (const [where, name, value] of [[window, 'fetch', none],
        [navigator, 'sendBeacon', () => false],
        [XMLHttpRequest.prototype, 'send', function () {}]]) {
      try { Object.defineProperty(where, name, {value, configurable: true, writable: true}); }
      catch (e) {}
    }
    try { sessionStorage.clear(); } catch (e) {}
    window.name = '';
    return true;
  };
  Object.defineProperty(window, '__shoal', {value: Object.freeze({loaded, appears, quiet})});
})();"""
# The page's own functions where the init script did not run (it runs in every document
# of shoal's contexts: this is the belt to its braces).
_ON_LOAD = """() => document.readyState === 'complete' || (window.__shoal ? window.__shoal.loaded :
  new Promise(resolve => window.addEventListener('load', () => resolve(true), {once: true})))"""
_APPEARS = """(selector) => window.__shoal ? window.__shoal.appears(selector) :
  document.querySelector(selector) !== null || new Promise(resolve => {
    const seen = new MutationObserver(() => {
      if (document.querySelector(selector) !== null) { seen.disconnect(); resolve(true); }
    });
    seen.observe(document, {childList: true, subtree: true, attributes: true});
  })"""
_QUIET_TAB = """() => window.__shoal.quiet()"""
# The DOM as a document (doctype included) and the URLs window.open was given.
_READ = """() => {
  const type = document.doctype;
  const root = document.documentElement;
  return [(type ? new XMLSerializer().serializeToString(type) : '') + (root ? root.outerHTML : ''),
          Array.from(window.__shoalPopups || []).slice(0, 1000)];
}"""


def _has_pidfd() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):  # not Linux, a kernel before 5.3, or a seccomp filter
        return False
    return True


class RenderError(ShoalError):
    """The browser cannot be started (missing, or it fails to launch)."""

    exit_code = 2


def find_browser(given: str | None) -> str | None:
    """The browser to run: ``given`` (a path or a name on PATH), else a Chromium or
    Chrome on PATH; None if there is none."""
    if given:
        return shutil.which(given) or (given if os.access(given, os.X_OK) else None)
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def check_render(opts: CrawlOptions, *, fetcher_given: bool, formats: list[str]) -> None:
    """What ``--render`` needs, checked before anything is opened (nothing imported)."""
    if fetcher_given:
        raise UsageError(
            "Crawler(render=...) renders with shoal's browser fetcher: give render or "
            "fetcher, not both"
        )
    del formats  # every format takes rendered pages (WARC: with what the browser loaded)
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("Playwright for Python is not installed")
    if find_browser(opts.browser) is None:
        where = f"{opts.browser!r} is not an executable" if opts.browser else "none on PATH"
        missing.append(f"no Chromium or Chrome ({where})")

    if missing:
        raise RenderError(f"--render needs a browser: {'; '.join(missing)}. Fix: {FIXES}")
    if not _has_pidfd():
        # The reaper that ends the browser with shoal (SIGKILL included) waits on a pidfd
        # of shoal's process: without one it could only poll.
        raise RenderError(
            "--render needs Linux 5.3 or later: the browser's reaper waits on a pidfd of "
            "shoal's process (os.pidfd_open), which this system does not give"
        )


@dataclass(slots=True)
class _Job:
    """One page for the browser: its first response, already fetched over HTTP."""

    url: str  # where the browser loads it (the HTTP fetch's final URL)
    status: int
    headers: Mapping[str, str]
    body: bytes
    request: FetchRequest
    timeout: float
    # The responses the browser loaded, for a WARC (None: the crawl writes none).
    archive: list[Fetched] | None = None
    archived_bytes: int = 0


@dataclass(slots=True)
class _Result:
    """What a render gave: the DOM, or why not (``error``), and where the page went."""

    final_url: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    navigated: list[str] = field(default_factory=list)  # URLs before final_url
    rendered: bool = True
    error: ErrorKind | None = None
    detail: str = ""
    truncated: bool = False


class _PageState:
    """One page being rendered: what its route handler decided, and its network activity."""

    def __init__(self, job: _Job, shared: bool = False) -> None:
        self.job = job
        # A shared crawl's page: its requests to its own host, one at a time.
        self.lease = _PageLease(host_key(job.request.url)) if shared else None
        self.started = False  # the first navigation (served from the HTTP response) went
        self.current = job.url
        self.status = job.status
        self.headers: Mapping[str, str] = job.headers
        self.navigated: list[str] = []
        self.popups: list[str] = []
        # A navigation to something not HTML: (url, status, headers, body, truncated).
        self.moved: tuple[str, int, Mapping[str, str], bytes, bool] | None = None
        self.ended = asyncio.Event()  # moved or crashed: stop waiting for the page
        self.crashed = False
        self.in_flight = 0
        self.last_activity = time.monotonic()
        self.activity = asyncio.Event()
        self.gate_lock = asyncio.Lock()  # a fetch's gate is not thread-safe: one at a time
        self.deadline = time.monotonic() + job.timeout  # no request beside it outlives it

    def restart(self) -> None:
        """Nothing of a first attempt in a tab that would not take the page (what a late
        handler of it recorded) stays: the page starts again in a new tab."""
        job = self.job
        self.started = False
        self.current = job.url
        self.status = job.status
        self.headers = job.headers
        self.navigated = []
        self.popups = []
        self.moved = None
        if job.archive is not None:
            job.archive.clear()
            job.archived_bytes = 0

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """A request beside the page, from the route handler's first look at it to its
        answer: the quiet window's activity. Every request of the page passes the route
        handler, so no browser event (one more message per request from the driver) is
        needed to see them."""
        self._touch(1)
        try:
            yield
        finally:
            self._touch(-1)

    def _touch(self, delta: int) -> None:
        self.in_flight += delta
        self.last_activity = time.monotonic()
        self.activity.set()


class _Tab:
    """A browser page (a tab) and the render it serves now, if any.

    A tab whose page ended well is kept for the next page of its context, which it
    navigates to from where it is: a new tab costs a renderer process and a round of
    set-up commands, and so does a detour through about:blank (another process), most
    of a small page's time. The page left behind may still run its timers until then;
    its requests are refused (no render owns the tab, or the next page's document is
    not served yet), and one that will not let the tab go (a beforeunload, a script that
    never yields) costs the next page a new tab, not its render."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.state: _PageState | None = None
        self.served = 0  # pages rendered in this tab
        self.crashed = False

    def on_crash(self, _page: Page) -> None:
        self.crashed = True
        if self.state is not None:
            _crashed(self.state)


class _Context:
    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.started = 0
        self.active = 0
        self.idle: list[_Tab] = []  # blank tabs, ready for a page


class _Reaper:
    """shoal's hold on a browser's reaper, which Playwright's driver started (it is not
    shoal's child): a pidfd, so a signal never reaches a process that took its pid over."""

    def __init__(self, work: str) -> None:
        self.work = work
        self.pid = 0
        self._fd: int | None = None
        self._lock = threading.Lock()
        with contextlib.suppress(OSError, ValueError):
            with open(os.path.join(work, "reaper")) as f:
                pid = int(f.read())
            fd = os.pidfd_open(pid)
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    ours = work.encode() in f.read()  # not a pid taken over before the pidfd
            except OSError:
                ours = False
            if ours:
                self.pid, self._fd = pid, fd
            else:
                os.close(fd)

    def alive(self) -> bool:
        if not self._lock.acquire(blocking=False):
            return False  # being killed
        try:
            return self._fd is not None and not _ended(self._fd, 0)
        finally:
            self._lock.release()

    def kill(self) -> None:
        """SIGTERM: the reaper kills the browser's group and removes its directory. One
        that does not end in time is killed (the browser has PR_SET_PDEATHSIG) and the
        directory removed here."""
        with self._lock:
            fd = self._fd
            if fd is None:
                return
            self._fd = None
            try:
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(fd, sig)
                    if _ended(fd, _KILL_WAIT):
                        break
            finally:
                os.close(fd)
            if sig == signal.SIGKILL:
                shutil.rmtree(self.work, ignore_errors=True)


def _ended(pidfd: int, wait: float) -> bool:
    poller = select.poll()  # not select(): shoal's own descriptors may pass FD_SETSIZE
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(wait * 1000))


class _Browser:
    """The browser and Playwright, owned by one thread that runs their asyncio loop."""

    def __init__(
        self,
        opts: CrawlOptions,
        transport: Transport,
        executable: str,
        slots: _HostSlots,
        steps: _UserSteps | None = None,
        *,
        shared: bool = False,
    ) -> None:
        self._opts = opts
        self._shared = shared
        self._steps = steps or _UserSteps()
        self._transport = transport
        self._host_slots = slots
        self._executable = executable
        self._blocked = opts.render_blocked()
        self._loop = asyncio.new_event_loop()
        # Blocking calls (the gate, side checks, HTTP fetches) run here, off the loop.
        self._pool = _DaemonPool(4 * opts.render_concurrency + 4, "shoal-render-io")
        self._thread = threading.Thread(target=self._run_loop, name="shoal-browser", daemon=True)
        self._pw: Playwright | None = None
        self._browser: Browser | None = None
        self._reaper: _Reaper | None = None
        self._context: _Context | None = None
        self._states: dict[Page, _PageState] = {}
        # A render hook may register on the page (expose_function, listeners, routes):
        # each page gets a tab of its own then, as the hook expects.
        self._keep_tabs = self._steps.hook is None
        self._over_memory = False  # loop thread only
        self._launching: asyncio.Lock | None = None
        self._closed = False
        self._base_headers = {
            "User-Agent": opts.user_agent,
            "Accept-Language": "en",
        }
        self._thread.start()
        try:
            self._call(self._start(), _LAUNCH_WAIT + 30)
        except BaseException:
            self.close()
            raise

    # -- the loop's thread ---------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> None:
        from playwright.async_api import async_playwright

        self._launching = asyncio.Lock()
        self._pw = await async_playwright().start()
        await self._launch()

    async def _launch(self) -> None:
        """Start the browser; once more if it ends as it starts (a loaded machine's first
        start of a browser can fail that way, and the next one start)."""
        try:
            await self._launch_once()
        except RenderError as exc:
            logger.warning("%s: trying once more", exc)
            await self._launch_once()

    async def _launch_once(self) -> None:
        """Start the browser under its reaper, Playwright's pipe (fds 3 and 4) its only
        way in: no DevTools port, so no other local user can drive it, and no WebSocket
        message limit on what a page is served."""
        from playwright.async_api import Error as PlaywrightError

        assert self._pw is not None
        self._kill()
        work = tempfile.mkdtemp(prefix="shoal-browser-")
        if len(work) > _MAX_PROFILE_PATH and os.path.isdir("/tmp"):
            # Chromium's singleton socket lives under its TMPDIR (the profile, below): a
            # Unix socket's path has at most 107 bytes.
            os.rmdir(work)
            work = tempfile.mkdtemp(prefix="shoal-browser-", dir="/tmp")
        # Playwright's driver would make this beside shoal's files (and leave it when
        # killed): the reaper removes it with the profile.
        artifacts = os.path.join(work, "playwright")
        os.mkdir(artifacts)
        flags = [
            "--headless=new",
            "--remote-debugging-pipe",
            "--no-startup-window",
            f"--user-data-dir={work}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            # Fewer processes: the GPU (software) and the network service (unused: every
            # request is served by shoal) live in the browser's own.
            "--in-process-gpu",
            "--enable-features=NetworkServiceInProcess2",
            "--disable-dev-shm-usage",
            # The same browser on every run (no server-picked field trials), whose tabs
            # run at full speed whether or not they are shown, never prompt, and do not
            # report to anyone.
            "--disable-field-trial-config",
            "--disable-background-timer-throttling",
            "--disable-backgrounding-occluded-windows",
            "--disable-renderer-backgrounding",
            "--disable-hang-monitor",
            "--disable-ipc-flooding-protection",
            "--disable-prompt-on-repost",
            "--disable-client-side-phishing-detection",
            "--disable-component-extensions-with-background-pages",
            "--no-service-autorun",
            "--metrics-recording-only",
            "--disable-background-networking",
            "--disable-breakpad",
            "--disable-crash-reporter",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-sync",
            "--mute-audio",
            # Popups open (and are closed at once): their URLs become links of the page.
            "--disable-popup-blocking",
            "--password-store=basic",
            # ProcessPerSiteUpToMainFrameThreshold would put pages of one site in one
            # renderer: one page's endless script would then stall the others. A page
            # left for the next in a kept tab is gone, not kept frozen (BackForwardCache).
            # HttpsUpgrades would load an http:// page over https (another server, or
            # none); LazyFrameLoading would never load an iframe a headless window does
            # not scroll to.
            "--disable-features=Translate,MediaRouter,OptimizationHints,"
            "DialMediaRouteProvider,ProcessPerSiteUpToMainFrameThreshold,BackForwardCache,"
            "SpareRendererForSitePerProcess,HttpsUpgrades,HttpsFirstBalancedModeAutoEnable,"
            "LazyFrameLoading,AvoidUnnecessaryBeforeUnloadCheckSync,AcceptCHFrame,"
            "CertificateTransparencyComponentUpdater,GlobalMediaControls,LensOverlay,"
            "DestroyProfileOnBrowserClose",
            # Everything is served through the route handler: the browser's own network
            # goes to a dead proxy, loopback included, so nothing leaves unchecked.
            "--proxy-server=http://127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>",
            f"--js-flags=--max-old-space-size={_JS_HEAP_MB}",
            # WebRTC speaks UDP outside any proxy: a page could reach any address with it.
            "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
            "--webrtc-ip-handling-policy=disable_non_proxied_udp",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            flags.append("--no-sandbox")  # Chromium refuses to sandbox as root
        env: dict[str, str | float | bool] = {
            **os.environ,
            # Whatever the browser writes beside its profile stays in it.
            "HOME": work,
            "XDG_CONFIG_HOME": work,
            "XDG_CACHE_HOME": work,
            "TMPDIR": work,
            "SHOAL_PID": str(os.getpid()),
        }
        try:
            # The "browser" Playwright starts is the reaper (given all the arguments:
            # none of Playwright's own), which starts the browser; signals are shoal's.
            self._browser = await self._pw.chromium.launch(
                executable_path=sys.executable,
                args=["-I", "-c", _REAPER, work, self._executable, *flags],
                ignore_default_args=True,
                env=env,
                artifacts_dir=artifacts,
                handle_sigint=False,
                handle_sigterm=False,
                handle_sighup=False,
                timeout=_LAUNCH_WAIT * 1000,
            )
            self._reaper = _Reaper(work)
        except PlaywrightError as exc:
            with contextlib.suppress(OSError):
                _Reaper(work).kill()
            shutil.rmtree(work, ignore_errors=True)  # a reaper that failed left it
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RenderError(
                f"the browser {self._executable} did not start within {_LAUNCH_WAIT:g} s "
                f"({why}); check it runs: {self._executable} --headless=new --version. {FIXES}"
            ) from None
        self._context = None

    def _kill(self) -> None:
        """Kill the browser's tree now (its reaper does it on SIGTERM). Safe from any
        thread."""
        reaper = self._reaper
        if reaper is not None:
            reaper.kill()

    async def _ensure_browser(self) -> Browser:
        assert self._launching is not None
        async with self._launching:
            browser = self._browser
            if browser is None or not browser.is_connected():
                logger.warning("the browser is gone: starting it again")
                self._browser = None
                await self._launch()
                browser = self._browser
            assert browser is not None
            return browser

    async def _context_for(self) -> _Context:
        browser = await self._ensure_browser()
        ctx = self._context
        if ctx is None or ctx.started >= _CONTEXT_PAGES or ctx.context.browser is not browser:
            if ctx is not None and ctx.active == 0:
                self._loop.create_task(self._close_context(ctx))
            elif ctx is not None:
                # Its tabs kept for later pages go now, not with its last page: the new
                # context's tabs would otherwise live beside them (twice the renderers).
                idle, ctx.idle = ctx.idle, []
                for tab in idle:
                    self._loop.create_task(_close_tab(tab))
            context = await browser.new_context(
                accept_downloads=False,
                service_workers="block",
                user_agent=self._opts.user_agent,
                ignore_https_errors=not self._opts.verify_tls,
            )
            ctx = self._context = _Context(context)
            await context.add_init_script(_POPUP_SCRIPT)
            await context.route("**/*", self._route)
            await context.route_web_socket("**/*", _close_web_socket)
        ctx.started += 1
        ctx.active += 1
        return ctx

    async def _close_context(self, ctx: _Context) -> None:
        try:
            await asyncio.wait_for(ctx.context.close(), _CLOSE_WAIT)
        except Exception as exc:  # noqa: BLE001 - a context that will not close: the browser goes
            logger.warning("a browser context did not close (%r): restarting the browser", exc)
            self._browser = None
            self._kill()

    def _done_with(self, ctx: _Context) -> None:
        ctx.active -= 1
        if ctx.active == 0 and ctx is not self._context:
            self._loop.create_task(self._close_context(ctx))

    # -- memory ----------------------------------------------------------------------------

    def memory_mb(self, enough_mb: float = 0.0) -> float:
        """What the browser's process tree holds now, MB (its proportional set size: a
        page shared by its processes counts once; or an upper bound of it, its resident
        size, when that is at most ``enough_mb``); 0 if it is not running. Any thread."""
        reaper = self._reaper
        if reaper is None or not reaper.alive():
            return 0.0
        return _tree_memory_mb(reaper.pid, enough_mb)

    def retire_context(self) -> None:
        """The next page opens a new context; this one closes once its pages are done
        (the only way its memory comes back). Any thread; runs before any later page."""

        def retire() -> None:
            ctx = self._context
            if ctx is not None:
                ctx.started = max(ctx.started, _CONTEXT_PAGES)

        self._loop.call_soon_threadsafe(retire)

    # -- one page ------------------------------------------------------------------------

    def render(self, job: _Job) -> _Result:
        """From a worker thread: the page rendered, or why not, within its deadline."""
        future = asyncio.run_coroutine_threadsafe(self._render(job), self._loop)
        try:
            result: _Result = future.result(job.timeout + _WORKER_MARGIN)
            return result
        except concurrent.futures.TimeoutError:
            future.cancel()
            logger.warning("the browser loop did not answer for %s: killing the browser", job.url)
            self._kill()  # the loop relaunches it for the next page
            return _failed(job, ErrorKind.RENDER_TIMEOUT, _timeout_detail(job))

    async def _render(self, job: _Job) -> _Result:
        state = _PageState(job, self._shared)
        holder: dict[str, Any] = {}
        task = asyncio.ensure_future(self._render_page(job, state, holder))
        try:
            result = await asyncio.wait_for(task, job.timeout)
            # Only a tab whose page ended well may serve another (a page that ran out of
            # time may still be running a script that would hold up the next one).
            holder["reuse"] = result.error is None and not state.crashed
            return result
        except TimeoutError:
            return _failed(job, ErrorKind.RENDER_TIMEOUT, _timeout_detail(job), state)
        except _UserCodeFailed as exc:
            return _failed(job, exc.kind, exc.detail, state)
        except Exception as exc:
            if state.crashed or "crash" in str(exc).lower():
                return _failed(job, ErrorKind.RENDER_CRASH, "the browser tab crashed", state)
            browser = self._browser
            if browser is None or not browser.is_connected():
                return _failed(job, ErrorKind.RENDER_CRASH, f"the browser failed: {exc}", state)
            if type(exc).__name__ == "TimeoutError":
                # Playwright's own, from a wait given what was left of the page's time (a
                # slow machine can leave a step a millisecond): the page ran out of time.
                return _failed(job, ErrorKind.RENDER_TIMEOUT, _timeout_detail(job), state)
            raise
        finally:
            await self._discard(holder)
            if state.lease is not None:
                # The worker releases the lease once this returns: no request of the
                # page to its host may still be out then (another lease would add its
                # own). The one out ends by the page's deadline (the transport's).
                await state.lease.close(state.deadline + _CLOSE_WAIT)

    async def _discard(self, holder: dict[str, Any]) -> None:
        """Keep the tab for the next page if its page ended well and it goes blank in
        time; else close the page; if it does not answer, its context; if that does not
        either, the browser (launched again for the next page)."""
        tab: _Tab | None = holder.get("tab")
        page = tab.page if tab is not None else None
        ctx: _Context | None = holder.get("context")
        if tab is not None and page is not None:
            self._disown(tab)
            if (
                holder.get("reuse")
                and self._keep_tabs
                and not self._over_memory
                and not tab.crashed
                and ctx is not None
                and ctx is self._context
                and ctx.started < _CONTEXT_PAGES
                and len(ctx.idle) < self._opts.render_concurrency
                and await self._quieted(page)
            ):
                ctx.idle.append(tab)
                page = None
        if page is not None:
            try:
                await asyncio.wait_for(page.close(run_before_unload=False), _CLOSE_WAIT)
            except Exception as exc:  # noqa: BLE001 - the watchdog's next step
                logger.warning("a browser page did not close (%r): closing its context", exc)
                if ctx is not None:
                    if ctx is self._context:
                        self._context = None
                    await self._close_context(ctx)
        if ctx is not None:
            self._done_with(ctx)

    async def _render_page(self, job: _Job, state: _PageState, holder: dict[str, Any]) -> _Result:
        opts = self._opts
        started = time.monotonic()
        # Time kept back to read the DOM once the waits are over.
        soft = started + job.timeout - min(job.timeout * 0.25, 5.0)
        ctx = await self._context_for()
        holder["context"] = ctx

        def left() -> float:
            return max(soft - time.monotonic(), 0.001) * 1000

        async def load() -> None:
            tab = await self._open(ctx, job, state, soft, holder)
            await self._load(tab.page, job, state, left, soft)

        ended = asyncio.ensure_future(state.ended.wait())
        try:
            loading = asyncio.ensure_future(load())
            await asyncio.wait({loading, ended}, return_when=asyncio.FIRST_COMPLETED)
            if not loading.done():
                loading.cancel()
            elif loading.exception() is not None and not state.ended.is_set():
                raise loading.exception()  # type: ignore[misc]
        finally:
            ended.cancel()
        if state.crashed:
            return _failed(job, ErrorKind.RENDER_CRASH, "the browser tab crashed", state)
        if state.moved is not None:
            url, status, headers, body, truncated = state.moved
            return _Result(
                url, status, headers, body, list(state.navigated), rendered=False,
                truncated=truncated,
            )  # fmt: skip
        page = holder["tab"].page
        dom, opened = await _read(page)
        state.popups += [u for u in opened if isinstance(u, str) and u.startswith("http")]
        popups = "".join(
            f'<a href="{html.escape(u, quote=True)}"></a>' for u in dict.fromkeys(state.popups)
        )
        body = (dom + popups).encode("utf-8", "replace")
        truncated = len(body) > opts.max_bytes
        headers = dict(state.headers)
        headers["content-type"] = "text/html; charset=utf-8"
        navigated = list(state.navigated)
        return _Result(
            state.current, state.status, headers, body[: opts.max_bytes], navigated,
            truncated=truncated,
        )  # fmt: skip

    async def _load(
        self, page: Page, job: _Job, state: _PageState, left: Callable[[], float], soft: float
    ) -> None:
        """Wait for load, for quiet, for the selector: each capped by ``soft``."""
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        opts = self._opts
        # Asked of the document, not of Playwright's navigation tracking (which keeps
        # waiting for a navigation the route handler cancelled, a 204), and in a promise
        # of the page's own world: no polling, and none of the script Playwright's
        # wait_for_function and wait_for_selector load into every document.
        if not await _until(page, _ON_LOAD, None, soft):
            logger.info("%s: no load event before the render deadline", job.url)
        await _quiet(state, opts.quiet_window(), soft)
        selector = opts.render_wait_for
        if selector:
            try:
                appeared = await _until(page, _APPEARS, selector, soft)
            except _NotCSS:
                # Not a CSS selector: one of Playwright's own (text=, xpath=, ...).
                try:
                    await page.wait_for_selector(selector, state="attached", timeout=left())
                    appeared = True
                except PlaywrightTimeout:
                    appeared = False
            if not appeared:
                logger.info("%s: %s did not appear", job.url, selector)
        await self._steps.run(page, state, soft)

    async def _quieted(self, page: Page) -> bool:
        """Whether the page left in ``page`` stopped its loads, timers and frames in time
        (a page that will not answer is not kept: its tab is closed)."""
        try:
            return bool(await asyncio.wait_for(page.evaluate(_QUIET_TAB), _LET_GO_WAIT))
        except Exception as exc:  # noqa: BLE001 - the tab is closed instead
            logger.debug("a tab's page did not quiet down (%r): closing it", exc)
            return False

    def shed_idle_tabs(self) -> None:
        """Over --render-memory: close the tabs kept for later pages (a tab's memory
        comes back only as it closes) and keep none until under it again. Any thread."""

        def shed() -> None:
            self._over_memory = True
            ctx = self._context
            if ctx is not None:
                idle, ctx.idle = ctx.idle, []
                for tab in idle:
                    self._loop.create_task(_close_tab(tab))

        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to shed
            self._loop.call_soon_threadsafe(shed)

    def under_memory(self) -> None:
        """Under --render-memory again: tabs are kept again. Any thread."""

        def under() -> None:
            self._over_memory = False

        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(under)

    async def _tab(self, ctx: _Context, *, kept: bool = True) -> _Tab:
        while kept and ctx.idle:
            tab = ctx.idle.pop()
            if not tab.crashed and not tab.page.is_closed():
                return tab
            self._loop.create_task(_close_tab(tab))
        page = await ctx.context.new_page()
        logger.debug("a new browser tab")
        tab = _Tab(page)
        page.on("dialog", _dismiss)
        page.on("popup", self._popup)
        page.on("crash", tab.on_crash)
        return tab

    async def _open(
        self, ctx: _Context, job: _Job, state: _PageState, soft: float, holder: dict[str, Any]
    ) -> _Tab:
        """A tab showing the page's document (committed): a kept one if it lets go of its
        last page in time, else a new one. The tab is the holder's from the start (its
        render's end disposes of it)."""
        tab = holder["tab"] = await self._tab(ctx)
        self._own(tab, state)
        if tab.served:
            try:
                await tab.page.goto(
                    job.url, wait_until="commit", timeout=min(_left(soft), _LET_GO_WAIT) * 1000
                )
            except Exception as exc:
                if state.crashed or state.ended.is_set() or time.monotonic() >= soft:
                    raise
                logger.debug("a kept tab did not take %s (%r): a new one", job.url, exc)
                self._disown(tab)
                self._loop.create_task(_close_tab(tab))
                state.restart()  # the document is served again, to the new tab
                tab = holder["tab"] = await self._tab(ctx, kept=False)
                self._own(tab, state)
            else:
                tab.served += 1
                return tab
        await tab.page.goto(job.url, wait_until="commit", timeout=_left(soft) * 1000)
        tab.served += 1
        return tab

    def _own(self, tab: _Tab, state: _PageState) -> None:
        tab.state = state
        self._states[tab.page] = state

    def _disown(self, tab: _Tab) -> None:
        tab.state = None
        self._states.pop(tab.page, None)

    def _popup(self, popup: Page) -> None:
        """A popup is closed (its URL is taken as the opener's link by the route handler)."""
        self._loop.create_task(_close_later(popup))

    # -- every request the browser makes ------------------------------------------------

    async def _route(self, route: Route, request: Request) -> None:
        try:
            await self._serve(route, request)
        except Exception as exc:  # noqa: BLE001 - the page may be gone: nothing to serve
            logger.debug("routing %s: %r", request.url, exc)
            with contextlib.suppress(Exception):  # already handled or the page closed
                await route.abort("failed")

    async def _serve(self, route: Route, request: Request) -> None:
        url = request.url
        try:
            page = request.frame.page
        except Exception:  # noqa: BLE001 - a worker's request: no page of ours
            await route.abort("blockedbyclient")
            return
        state = self._states.get(page)
        if state is None:
            # A popup (or a page opened some other way): its URL becomes the opener's link.
            opener = await page.opener()
            owner = self._states.get(opener) if opener is not None else None
            if owner is not None and url.startswith(("http://", "https://")):
                owner.popups.append(url)
            await route.abort("blockedbyclient")
            return
        if not url.startswith(("http://", "https://")):
            await route.abort("blockedbyclient")
            return
        main = request.is_navigation_request() and request.frame == page.main_frame
        if main and not state.started and url == state.job.url:
            state.started = True
            job = state.job
            await route.fulfill(status=job.status, headers=_served(job.headers), body=job.body)
            return
        if main:
            # Also a first navigation to another URL than the page's (nothing of the
            # browser's own should rewrite it; if it does, it passes the gate).
            await self._navigate(route, request, state)
            return
        if not state.started:
            # The document a kept tab showed before this page's was served: its request.
            await route.abort("blockedbyclient")
            return
        with state.serving():
            await self._serve_beside(route, request, state)

    async def _serve_beside(self, route: Route, request: Request, state: _PageState) -> None:
        url = request.url
        if request.resource_type in self._blocked:
            await route.abort("blockedbyclient")
            return
        if request.method != "GET":
            # A crawler reads pages; it does not act on them. A script's POST, PUT or
            # beacon is refused: sent by Playwright's own network code it would follow
            # redirects past the gate, --deny-private, the proxy and the per-host slots.
            # Refused before the side check, which may read another host's robots.txt.
            logger.debug("not sent beside %s: a %s to %s", state.current, request.method, url)
            await route.abort("blockedbyclient")
            return
        loop = asyncio.get_running_loop()
        try:
            why = await loop.run_in_executor(self._pool, state.job.request.side, url)
        except TransportError as exc:
            why = exc.detail
        if why is not None:
            logger.debug("not requested beside %s: %s (%s)", state.current, url, why)
            await route.abort("blockedbyclient")
            return
        await self._serve_get(route, request, state)

    async def _serve_get(self, route: Route, request: Request, state: _PageState) -> None:
        got = await self._get(request, state)
        if got is None:
            await route.abort("failed")
            return
        status, headers, body, _truncated = got
        _keep(state.job, request, got)
        await route.fulfill(status=status, headers=_served(headers), body=body)

    async def _get(
        self, request: Request, state: _PageState
    ) -> tuple[int, Mapping[str, str], bytes, bool] | None:
        """GET ``request.url`` over the crawl's transport, with the browser's headers and
        the crawl's for that URL; None if it failed."""
        url = request.url
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST}
        headers.update(self._base_headers)
        headers.update(state.job.request.headers_for(url))
        cookies = state.job.request.cookies
        if cookies is not None:
            cookie = _cookie_header(cookies, url, await _browser_cookie(request))
            if cookie:
                headers["Cookie"] = cookie
        deadline = max(state.deadline, time.monotonic() + 0.001)
        loop = asyncio.get_running_loop()

        def send() -> tuple[int, Mapping[str, str], bytes, bool]:
            response = self._transport.get(
                url, headers, max_bytes=self._opts.max_bytes, deadline=deadline, truncate=True
            )
            if cookies is not None:
                set_cookie = response.headers.get("set-cookie")
                if set_cookie:
                    cookies.jar.receive(url, set_cookie)
            return response.status, response.headers, response.body, response.truncated

        lease = state.lease
        try:
            if lease is not None and host_key(url) == lease.host:
                return await lease.send(send, deadline, self._pool)
            slot = self._host_slots.slot(url)

            def get() -> tuple[int, Mapping[str, str], bytes, bool]:
                # One of the host's --per-host slots, shared with the pages' own fetches;
                # a request that gets none before its page's deadline is not made.
                if not slot.acquire(timeout=max(deadline - time.monotonic(), 0.001)):
                    raise TransportError(ErrorKind.TIMEOUT, "no free --per-host slot in time")
                try:
                    return send()
                finally:
                    slot.release()

            return await loop.run_in_executor(self._pool, get)
        except TransportError as exc:
            logger.debug("%s (beside %s): %s", url, state.current, exc)
            return None

    async def _navigate(self, route: Route, request: Request, state: _PageState) -> None:
        """A later navigation of the page: through the gate first, then served if HTML;
        anything else ends the render with that response."""
        url = request.url
        loop = asyncio.get_running_loop()
        async with state.gate_lock:
            try:
                why = await loop.run_in_executor(self._pool, state.job.request.gate, url)
            except TransportError as exc:
                why = f"{exc.kind}: {exc.detail}"
        if why is not None:
            logger.info("%s: navigation to %s not followed: %s", state.current, url, why)
            await _stay(route)
            return
        got = await self._get(request, state)
        if got is None:
            await route.abort("failed")
            return
        status, headers, body, truncated = got
        _keep(state.job, request, got)
        state.navigated.append(state.current)
        state.current = url
        disposition = headers.get("content-disposition", "").lower()
        if (300 <= status < 400 and "location" in headers) or (
            is_html(headers.get("content-type", ""), body) and "attachment" not in disposition
        ):
            state.status, state.headers = status, headers
            await route.fulfill(status=status, headers=_served(headers), body=body)
            return
        # A download or another non-page: the page moved there; nothing reaches the disk.
        state.moved = (url, status, headers, body, truncated)
        state.ended.set()
        await _stay(route)

    # -- the end -------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        # The browser holds nothing to save: its tree is killed (the reaper removes the
        # profile), with no page or context close that a hung tab could hold up.
        browser = self._browser
        self._context = self._browser = None
        closed = None
        if browser is not None and browser.is_connected():
            # Asked before the kill, the close returns once Playwright's driver has
            # removed the empty profile it made at launch: stopped before that, the
            # driver would leave it.
            closed = asyncio.ensure_future(browser.close())
            await asyncio.sleep(0)
        await asyncio.get_running_loop().run_in_executor(self._pool, self._kill)
        if closed is not None:
            with contextlib.suppress(Exception):  # a browser gone before: nothing to wait for
                await asyncio.wait_for(closed, _CLOSE_WAIT)
        # Playwright's driver is stopped before the tasks are cancelled: its connection
        # runs on tasks of this loop too, and without them the driver (a node process)
        # would live on until this process ends.
        if self._pw is not None:
            with contextlib.suppress(Exception):  # the driver goes with this process anyway
                await asyncio.wait_for(self._pw.stop(), _CLOSE_WAIT)
        here = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not here]
        for task in others:  # pages and route handlers: nothing left to serve
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=_CLOSE_WAIT)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._thread.is_alive():
                self._call(self._shutdown(), 4 * _CLOSE_WAIT)
        except Exception as exc:  # noqa: BLE001 - killed below either way
            logger.debug("closing the browser: %r", exc)
        finally:
            self._kill()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_CLOSE_WAIT)
            self._pool.shutdown()


class BrowserFetcher:
    """The fetcher of ``--render always|auto``: HTML pages rendered in a headless
    Chromium (in auto, those that need it), everything else over plain HTTP (see the
    module's docstring)."""

    def __init__(
        self, setup: FetchSetup, *, script: str | None = None, hook: RenderHook | None = None
    ) -> None:
        opts = setup.options
        executable = find_browser(opts.browser)
        if executable is None or importlib.util.find_spec("playwright") is None:
            check_render(opts, fetcher_given=False, formats=[])  # raises, naming the fixes
            raise RenderError(f"--render needs a browser. Fix: {FIXES}")
        self._opts = opts
        self._archive = setup.archive
        self._http = HTTPFetcher.from_setup(setup)
        self._slots = threading.BoundedSemaphore(opts.render_concurrency)
        # Learned per prefix in auto, the crawl's mode or a host's own (``hosts``).
        self._learner = RenderLearner()
        steps = _UserSteps(
            opts.render_scroll, max(opts.quiet_window(), _SCROLL_SETTLE), script, hook
        )
        self._host_slots = _HostSlots(opts)
        self._shared = setup.shared
        self._browser = _Browser(
            opts, setup.transport, executable, self._host_slots, steps, shared=setup.shared
        )
        self.memory = _MemoryBudget(
            opts.render_memory,
            self._browser.memory_mb,
            over=self._browser.shed_idle_tabs,
            under=self._browser.under_memory,
        )

    def close(self) -> None:
        self._browser.close()
        if self.memory.held:
            logger.info(
                "the browser was over --render-memory %d MB: %d pages waited for it",
                self._opts.render_memory,
                self.memory.held,
            )

    def fetch(self, request: FetchRequest) -> Fetched:
        started = time.monotonic()
        if self._shared:
            # Its lease is its host's slot across the shared crawl, and this its only
            # request out (the browser's come after it, one at a time: see _PageLease).
            fetched = self._http.fetch(request)
        else:
            # The page's own request takes one of its host's slots, as its subresources do.
            with self._host_slots.slot(request.url):
                fetched = self._http.fetch(request)
        # A POST's answer (shoal.Request) is kept as sent: loading it again in a browser
        # would mean sending the form again.
        if (
            request.kind is not JobKind.PAGE
            or request.method != "GET"
            or fetched.method != "GET"
            or not _renderable(fetched)
        ):
            return fetched
        # The host's own mode (``hosts``), else --render: a host set to never is never
        # rendered, one set to always always is, whatever the crawl's mode.
        mode = self._opts.host_render(host_key(request.url))
        if mode == "never":
            return fetched
        reason, probe = self._why(fetched, mode)
        if reason is None:
            return dataclasses.replace(fetched, render_reason="static")
        job = _Job(
            fetched.final_url,
            fetched.status or 200,
            fetched.headers,
            fetched.body,
            request,
            self._opts.render_timeout,
            archive=[] if self._archive else None,
        )
        try:
            with self._slots, self.memory.admitted() as alone_over_budget:
                if alone_over_budget:
                    self._browser.retire_context()  # its memory comes back only as it closes
                result = self._browser.render(job)
        except BaseException:
            if probe:  # handed out again: pages of its prefix wait for a probe's answer
                self._learner.learn(fetched.final_url, None)
            raise
        if probe:
            # Rendered both ways to learn the prefix: only what gains is kept rendered.
            gained = None
            if result.error is None and result.rendered:
                gained = gains(_measured(fetched.body, fetched.content_type),
                               _measured(result.body, "text/html; charset=utf-8"))  # fmt: skip
            self._learner.learn(fetched.final_url, gained)
            if not gained:
                return dataclasses.replace(
                    fetched, elapsed=time.monotonic() - started, render_reason="static"
                )
        archive: tuple[Fetched, ...] = ()
        if job.archive is not None:
            archive = (fetched, *list(job.archive))  # a copy: a late handler may still add
        served: tuple[str, ...] = ()
        if result.navigated:
            # Its script moved the page (to another page, a download): the record is
            # where it went, and the links of the document as served are followed too.
            served = self._served_links(fetched)
        return dataclasses.replace(
            fetched,  # the request that got the document (method, headers) stays its own
            final_url=result.final_url,
            status=result.status,
            headers=result.headers,
            body=result.body,
            elapsed=time.monotonic() - started,
            redirects=(*fetched.redirects, *result.navigated),
            error=result.error,
            detail=result.detail,
            truncated=result.truncated or fetched.truncated,
            rendered=result.rendered and result.error is None,
            render_reason=reason,
            archive=archive,
            served_links=served,
        )

    def _served_links(self, fetched: Fetched) -> tuple[str, ...]:
        """The links of the page as the server sent it, as the crawler would take them
        (none if it says nofollow and the crawl obeys it)."""
        opts = self._opts
        page = CrawlPage.over(
            fetched,
            depth=0,
            referrer=None,
            max_links=opts.max_links_per_page,
            robots_agent=product_token(opts.user_agent),
        )
        if opts.obey_nofollow and "nofollow" in page.robots:
            return ()
        return tuple(page.links)

    def _why(self, fetched: Fetched, mode: str) -> tuple[str | None, bool]:
        """(why render this page in ``mode``, or None not to; whether it is a probe)."""
        if mode == "always":
            return "always", False
        text, _ = decode_body(fetched.body, fetched.content_type)
        built = script_built(text)
        if built is not None:
            return built, False
        if not has_script(text):
            return None, False  # no script: rendering cannot change it
        # While the prefix's probes render, its other pages wait for their verdict (see
        # RenderLearner): at most as long as a probe's render may take once it runs.
        wait = self._opts.render_timeout + _WORKER_MARGIN
        verdict = self._learner.verdict(fetched.final_url, wait)
        if verdict.render:
            return "learned", False
        if verdict.probe:
            return "probe", True
        return None, False


# The least quiet window after each scroll step and after --render-script: lazy content
# is asked for only once the page sees the scroll (or the click).
_SCROLL_SETTLE = 0.25
_SCROLL_JS = """() => {
  const el = document.scrollingElement || document.documentElement;
  const before = el.scrollHeight;
  window.scrollTo(0, before);
  window.dispatchEvent(new Event('scroll'));
  return before;
}"""
_HEIGHT_JS = "() => (document.scrollingElement || document.documentElement).scrollHeight"


class _UserCodeFailed(Exception):
    """--render-script or the render hook failed: the page's error."""

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class _UserSteps:
    """What is done in a page between its loading and its DOM being read: scrolling,
    --render-script, the render hook; each within the page's soft deadline."""

    scroll: int = 0
    settle: float = _SCROLL_SETTLE
    script: str | None = None
    hook: RenderHook | None = None

    async def run(self, page: Page, state: _PageState, soft: float) -> None:
        if self.scroll:
            await self._scroll(page, state, soft)
        if self.script is not None:
            await self._script(page, state, soft)
        if self.hook is not None:
            await self._hook(page, soft)

    async def _scroll(self, page: Page, state: _PageState, soft: float) -> None:
        same = 0
        for _ in range(self.scroll):
            if time.monotonic() >= soft:
                return
            try:
                before = await _bounded(page.evaluate(_SCROLL_JS), soft)
                await _quiet(state, self.settle, soft)
                after = await _bounded(page.evaluate(_HEIGHT_JS), soft)
            except Exception as exc:  # noqa: BLE001 - the page navigated meanwhile: read it as it is
                logger.debug("%s: scrolling stopped: %r", state.current, exc)
                return
            # Twice nothing new at the bottom: the end of the list.
            same = same + 1 if after == before else 0
            if same >= 2:
                return

    async def _script(self, page: Page, state: _PageState, soft: float) -> None:
        assert self.script is not None
        try:
            await asyncio.wait_for(
                page.evaluate("async () => {\n" + self.script + "\n}"), _left(soft)
            )
        except TimeoutError:
            raise _UserCodeFailed(
                ErrorKind.RENDER_SCRIPT, "--render-script did not finish before the page's deadline"
            ) from None
        except Exception as exc:  # noqa: BLE001 - the script's error is the page's
            raise _UserCodeFailed(ErrorKind.RENDER_SCRIPT, f"--render-script: {exc}") from None
        await _quiet(state, self.settle, soft)

    async def _hook(self, page: Page, soft: float) -> None:
        assert self.hook is not None
        try:
            await asyncio.wait_for(_awaited(self.hook(page)), _left(soft))
        except TimeoutError:
            raise _UserCodeFailed(
                ErrorKind.RENDER_HOOK, "the render hook did not finish before the page's deadline"
            ) from None
        except Exception as exc:  # noqa: BLE001 - the hook's error is the page's
            logger.info("render hook on %s: %r", page.url, exc)
            detail = f"the render hook raised {exc!r}"
            raise _UserCodeFailed(ErrorKind.RENDER_HOOK, detail) from None


async def _awaited(value: object) -> None:
    if inspect.isawaitable(value):
        await value


async def _bounded(coro: Any, soft: float) -> Any:
    try:
        return await asyncio.wait_for(coro, _left(soft))
    except TimeoutError:
        return None


def _left(soft: float) -> float:
    return max(soft - time.monotonic(), 0.001)


def _measured(body: bytes, content_type: str) -> tuple[int, int]:
    return measure(decode_body(body, content_type)[0])


def _renderable(fetched: Fetched) -> bool:
    status = fetched.status
    return (
        fetched.error is None
        and status is not None
        and 200 <= status < 300
        and status != 204
        and is_html(fetched.content_type, fetched.body)
    )


def _failed(job: _Job, kind: ErrorKind, detail: str, state: _PageState | None = None) -> _Result:
    """A render that gave no DOM: the page's HTTP response, with why."""
    if state is None or not state.navigated:
        return _Result(job.url, job.status, job.headers, job.body, rendered=False, error=kind,
                       detail=detail)  # fmt: skip
    return _Result(
        state.current, state.status, state.headers, b"", list(state.navigated),
        rendered=False, error=kind, detail=detail,
    )  # fmt: skip


def _timeout_detail(job: _Job) -> str:
    return f"the page was not rendered within {job.timeout:g} s (--render-timeout)"


def _served(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in _DROP_RESPONSE}


class _DaemonPool(concurrent.futures.Executor):
    """Threads for the loop's blocking calls. Daemon threads, unlike a
    ThreadPoolExecutor's: a request still running at exit (a dripping script) must not
    keep the process alive until its deadline."""

    def __init__(self, workers: int, name: str) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((future, fn, args, kwargs))
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                future.set_exception(exc)

    def shutdown(self, wait: bool = False, *, cancel_futures: bool = False) -> None:
        for _ in self._threads:
            self._queue.put(None)


def _crashed(state: _PageState) -> None:
    state.crashed = True
    state.ended.set()


async def _quiet(state: _PageState, wait: float, until: float) -> None:
    """Until the page's requests have been quiet for ``wait`` seconds, or ``until``."""
    if wait <= 0:
        return
    while True:
        now = time.monotonic()
        if now >= until:
            return
        if state.in_flight <= 0:
            idle = now - state.last_activity
            if idle >= wait:
                return
            timeout = min(wait - idle, until - now)
        else:
            timeout = until - now
        state.activity.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.activity.wait(), timeout)


class _NotCSS(Exception):
    """--render-wait-for is not a CSS selector ``querySelector`` takes."""


async def _until(page: Page, script: str, arg: object, soft: float) -> bool:
    """Whether ``script`` (a promise in the page's world) resolved before ``soft``. A
    navigation destroys the document it waits in: asked again of the next one."""
    from playwright.async_api import Error as PlaywrightError

    for _ in range(_NAVIGATIONS_FOLLOWED):
        try:
            await asyncio.wait_for(page.evaluate(script, arg), _left(soft))
            return True
        except TimeoutError:
            return False
        except PlaywrightError as exc:
            message = str(exc)
            if "SyntaxError" in message or "not a valid selector" in message:
                raise _NotCSS(message) from None
            if "navigat" not in message.lower() and "context" not in message:
                raise
        if time.monotonic() >= soft:
            return False
        await asyncio.sleep(0.05)  # the next document's context, a moment later
    return False


async def _read(page: Page) -> tuple[str, list[object]]:
    """The DOM and the popups' URLs, in one call in the page's world; Playwright's own
    read (an isolated world made for it) if the page's world will not answer (a page
    that broke the serializer)."""
    from playwright.async_api import Error as PlaywrightError

    try:
        got = await page.evaluate(_READ)
        if isinstance(got, list) and len(got) == 2 and isinstance(got[0], str):
            return got[0], list(got[1]) if isinstance(got[1], list) else []
    except PlaywrightError as exc:
        logger.debug("%s: the DOM read in the page's world failed: %r", page.url, exc)
    return await _content(page), []


async def _content(page: Page) -> str:
    """The DOM; a navigation under way destroys the context it is read in: read again."""
    from playwright.async_api import Error as PlaywrightError

    for attempt in range(5):
        try:
            return await page.content()
        except PlaywrightError as exc:
            if attempt == 4 or ("navigat" not in str(exc).lower() and "context" not in str(exc)):
                raise
            await asyncio.sleep(0.05)
    raise AssertionError("unreachable")


async def _stay(route: Route) -> None:
    """Answer a navigation so that the page stays where it is: a 204 cancels it (an
    aborted one would put the browser's error page in its place)."""
    await route.fulfill(status=204, body=b"")


async def _dismiss(dialog: Any) -> None:
    with contextlib.suppress(Exception):  # the page may be closing
        await dialog.dismiss()


async def _close_web_socket(ws: Any) -> None:
    # Not connected to any server: a WebSocket would pass no gate.
    with contextlib.suppress(Exception):
        await ws.close()


async def _close_tab(tab: _Tab) -> None:
    with contextlib.suppress(Exception):  # a tab that will not close goes with its context
        await asyncio.wait_for(tab.page.close(run_before_unload=False), _CLOSE_WAIT)


async def _close_later(popup: Any) -> None:
    # A moment for its first request to reach the route handler (which takes its URL).
    await asyncio.sleep(0.5)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(popup.close(run_before_unload=False), _CLOSE_WAIT)


# -- what the browser loaded, for a WARC ------------------------------------------------


def _keep(job: _Job, request: Request, got: tuple[int, Mapping[str, str], bytes, bool]) -> None:
    """Keep one response the browser loaded (status, headers, body, truncated) for the
    page's WARC, within the page's bounds (``_ARCHIVE_MAX_COUNT``, ``_ARCHIVE_MAX_BYTES``)."""
    archive = job.archive
    if archive is None:
        return
    status, headers, body, truncated = got
    if len(archive) >= _ARCHIVE_MAX_COUNT or job.archived_bytes + len(body) > _ARCHIVE_MAX_BYTES:
        logger.debug("%s: not archived (the page's WARC bounds are reached)", request.url)
        return
    job.archived_bytes += len(body)
    sent = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST}
    archive.append(
        Fetched(
            request.url,
            request.url,
            status,
            headers,
            body,
            truncated=truncated,
            request_headers=sent,
        )
    )


# -- politeness: the host's slots, for pages and what they load ---------------------------


class _HostSlots:
    """Requests in flight to each host from this process's browser fetcher: a page's own
    fetch and every request its browser makes to a host draw from that host's
    ``--per-host`` slots (its ``hosts`` table's, if it has one). Each request holds one
    slot only while it is out and never waits for a slot while holding one, so no
    request waits on another that waits on it. In a shared crawl a page's requests to
    its own host go under its lease instead (:class:`_PageLease`): only those to other
    hosts take slots here."""

    def __init__(self, opts: CrawlOptions) -> None:
        self._opts = opts
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}

    def slot(self, url: str) -> threading.BoundedSemaphore:
        key = host_key(url)
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = threading.BoundedSemaphore(max(self._opts.host_per_host(key), 1))
                self._slots[key] = slot
            return slot


# A GET's answer beside a page: status, headers, body, truncated.
_Got = tuple[int, Mapping[str, str], bytes, bool]


class _PageLease:
    """A page of a shared crawl (``--redis``) and its own host: its lease.

    The crawl's frontier leases at most a host's ``--per-host`` pages at once across all
    workers; this process's :class:`_HostSlots` know nothing of the others. So the page's
    requests to the leased URL's host (its own fetch, then each subresource and
    navigation of the browser) go out one at a time under the lease instead, holding no
    slot: across the crawl that host has at most one request in flight per leased page.
    Waited for on the loop (no thread is held): a request that cannot go before the
    page's deadline is not made. Requests to other hosts keep the process's slots."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._lock = asyncio.Lock()
        self._closed = False

    async def send(
        self,
        call: Callable[[], _Got],
        deadline: float,
        pool: concurrent.futures.Executor,
    ) -> _Got:
        """``call()`` in ``pool`` once no other request of the page to its host is out
        (TransportError if that is not before ``deadline``, or the page is over)."""
        if self._closed:
            raise TransportError(ErrorKind.TIMEOUT, "the page's render is over")
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                await self._lock.acquire()
        except TimeoutError:
            raise TransportError(
                ErrorKind.TIMEOUT, "the page's other requests to its host took its time"
            ) from None
        if self._closed:
            self._lock.release()
            raise TransportError(ErrorKind.TIMEOUT, "the page's render is over")
        sent = asyncio.get_running_loop().run_in_executor(pool, call)
        try:
            got = await asyncio.shield(sent)
        except asyncio.CancelledError:
            # The request goes on in its thread: the lock is the page's until it ends.
            sent.add_done_callback(self._release_when_sent)
            raise
        except BaseException:
            self._lock.release()
            raise
        self._lock.release()
        return got

    def _release_when_sent(self, sent: asyncio.Future[_Got]) -> None:
        if not sent.cancelled():
            sent.exception()  # retrieved: its TransportError was the page's, not news
        self._lock.release()

    async def close(self, until: float) -> None:
        """No request of the page to its host after this; returns once the one out (if
        any) has ended, or at ``until`` (monotonic)."""
        self._closed = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(until - time.monotonic(), 0.001)):
                await self._lock.acquire()
                return  # kept: nothing is sent under a closed lease
        logger.warning("a request of a rendered page outlived its deadline (%s)", self.host)


# -- cookies: the crawl's jar on the browser's requests ---------------------------------


async def _browser_cookie(request: Request) -> str | None:
    """The Cookie header the browser would send (its own cookies: document.cookie)."""
    try:
        return await request.header_value("cookie")
    except Exception:  # noqa: BLE001 - the page may be gone: none
        return None


def _cookie_header(cookies: FetchCookies, url: str, browser: str | None) -> str | None:
    """The jar's cookies for ``url``, then the browser's own that the jar does not name
    (a script's document.cookie); the jar's value wins for a name both have."""
    jar = cookies.header(url)
    if not browser:
        return jar
    names = {pair.split("=", 1)[0].strip() for pair in (jar or "").split(";") if pair.strip()}
    own = [
        pair.strip()
        for pair in browser.split(";")
        if pair.strip() and pair.split("=", 1)[0].strip() not in names
    ]
    return "; ".join([*([jar] if jar else []), *own]) or None


# -- memory: --render-memory over the browser's process tree -----------------------------


class _MemoryBudget:
    """``--render-memory``: a new page waits while the browser's tree is over the budget
    and another page is rendering (its end can bring memory back). A page with none
    beside it is let in whatever the measure (its caller retires the context first), so
    the crawl never waits forever; and a page let in always finishes (its deadline)."""

    # Seconds a measure stands (a waiting page looks again this often); twice as long
    # while under half the budget. A measure reads /proc for every process of the
    # machine and the smaps of the browser's: measured for every page, it was most of
    # shoal's own CPU in a render crawl.
    _RECHECK = 0.5

    def __init__(
        self,
        budget_mb: int,
        measure: Callable[[float], float],
        over: Callable[[], None] | None = None,
        under: Callable[[], None] | None = None,
    ) -> None:
        # Told when the measure goes over the budget, and back under it (the browser's
        # kept tabs: shed, then kept again); quick, and safe under this budget's lock.
        self._over_budget = over
        self._under_budget = under
        self._over = False
        self.budget_mb = budget_mb
        self._measure = measure
        self._cond = threading.Condition()
        self._active = 0
        self._measured_at = float("-inf")
        self._used = 0.0
        self.held = 0  # pages that waited for memory (the budget observed)
        self.peak_mb = 0.0

    def _now_mb(self) -> float:
        now = time.monotonic()
        recheck = self._RECHECK if self._used * 2 > self.budget_mb else 2 * self._RECHECK
        if now - self._measured_at >= recheck:
            self._used = self._measure(self.budget_mb)
            over = self._used > self.budget_mb
            if over != self._over:
                self._over = over
                told = self._over_budget if over else self._under_budget
                if told is not None:
                    told()
            self._measured_at = now
            self.peak_mb = max(self.peak_mb, self._used)
        return self._used

    @contextlib.contextmanager
    def admitted(self) -> Iterator[bool]:
        """Hold the page back while over the budget; yields True if it is let in over
        the budget because no other page is rendering."""
        alone_over = False
        with self._cond:
            waited = False
            while self._now_mb() > self.budget_mb:
                if self._active == 0:
                    alone_over = True
                    break
                if not waited:
                    waited = True
                    if self.held == 0:
                        logger.warning(
                            "the browser holds %.0f MB, over --render-memory %d MB: new "
                            "pages wait until it drops",
                            self._used,
                            self.budget_mb,
                        )
                    self.held += 1
                self._cond.wait(self._RECHECK)
            self._active += 1
        try:
            yield alone_over
        finally:
            with self._cond:
                self._active -= 1
                if self._used > self.budget_mb:
                    # Pages wait for memory to come back: a page ended, so look now.
                    self._measured_at = float("-inf")
                    self._cond.notify_all()


def _tree_memory_mb(root: int, enough_mb: float = 0.0) -> float:
    """The proportional set size of ``root``'s descendants (not ``root``), MB, from
    /proc; or their resident size when that is at most ``enough_mb``. A process's
    resident size counts every page it shares in full, so it bounds its proportional
    share from above: under a budget by that bound, the tree is under it, read from
    statm in microseconds where smaps_rollup takes a millisecond or more a process."""
    pids = _descendants(root)
    resident_kb = sum(_resident_kb(pid) for pid in pids)
    if resident_kb <= enough_mb * 1024:
        return resident_kb / 1024
    return sum(_process_kb(pid) for pid in pids) / 1024


def _descendants(root: int) -> list[int]:
    """``root``'s descendants: from each thread's children list where the kernel keeps
    one (CONFIG_PROC_CHILDREN), else by parent pid over all of /proc."""
    if os.path.exists(f"/proc/{root}/task/{root}/children"):
        found: list[int] = []
        todo = [root]
        while todo:
            pid = todo.pop()
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue  # gone meanwhile
            for tid in tasks:
                try:
                    with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                        kids = [int(k) for k in f.read().split()]
                except (OSError, ValueError):
                    continue
                found += kids
                todo += kids
        return found
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The name (field 2) may hold spaces and parentheses: the fields after it count
        # from its last ")".
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    out: list[int] = []
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _resident_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return 0


def _process_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return _resident_kb(pid)
