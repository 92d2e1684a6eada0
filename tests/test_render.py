"""--render always: pages that JavaScript builds, crawled in Debian's headless Chromium.

A local app-shell shop (``<div id=app></div><script src=/app.js>``, filled from a JSON API)
must be crawled completely from the rendered DOM; hostile pages (an endless script, a
script that never finishes loading, dialogs, a popup, a download, navigations off scope
and in a loop, XHR spam) are each recorded once with an honest outcome, the crawl ends by
itself, nothing is written outside the outputs, and no browser process outlives the run,
nor shoal killed with SIGKILL.

Under CI a missing browser is a failure; elsewhere the tests are skipped with the reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rendering import (
    LISTS,
    PER_LIST,
    browsers_of,
    isolated_env,
    no_browser_left,
    records,
    shoal,
    shop,
    short_tmpdirs,
)
from sites import Reply, Request, Site

TESTS = Path(__file__).parent

pytestmark = pytest.mark.usefixtures("browser")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A TMPDIR with a short path, the run's own: its name marks the browser's processes,
    and nothing may be left in it."""
    with short_tmpdirs(1, "r18-") as (path,):
        yield path


def test_the_app_shell_shop_is_crawled_from_the_rendered_dom(
    tmp_path: Path, short_tmp: Path
) -> None:
    env = isolated_env(short_tmp, tmp_path / "home")
    work = tmp_path / "work"
    work.mkdir()
    with Site() as site:
        site.fallback = shop
        done = shoal("crawl", site.url("/"), "-o", "pages.jsonl", "--render", "always",
                     "--extract", "name=h1::text", cwd=work, env=env)  # fmt: skip
        assert done.returncode == 0, done.stderr
        api = {p for p in site.paths() if p.startswith("/api/")}
    got = {str(r["url"]).split("/", 3)[3]: r for r in records(work / "pages.jsonl")}
    want_items = {f"item/{i}" for i in range(1, LISTS * PER_LIST + 1)}
    want_lists = {f"list/{n}" for n in range(2, LISTS + 1)}
    assert set(got) == {"", *want_lists, *want_items}
    for key, record in got.items():
        assert record["rendered"] is True and record["error"] is None, record
        if key.startswith("item/"):
            assert record["name"] == f"Item {key.split('/')[1]}"
        else:
            assert record["name"] == f"List {key.split('/')[1] if key else 1}"
    # The JSON API was fetched by the pages' scripts, not crawled as pages.
    assert len(api) == LISTS + LISTS * PER_LIST
    assert sorted(p.name for p in work.iterdir()) == ["pages.jsonl", "pages.jsonl.state.sqlite"]
    assert list(short_tmp.iterdir()) == [] and list((tmp_path / "home").iterdir()) == []
    assert no_browser_left(str(short_tmp)) == []


def test_without_render_the_shell_is_all_there_is(tmp_path: Path) -> None:
    """The static crawl the issue starts from: the shell, no item found, no rendered field."""
    with Site() as site:
        site.fallback = shop
        done = shoal("crawl", site.url("/"), "-o", "pages.jsonl", "--extract", "name=h1::text",
                     cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
    (only,) = records(tmp_path / "pages.jsonl")
    assert only["name"] is None and "rendered" not in only


# -- hostile pages ---------------------------------------------------------------------


def page(body: str, head: str = "") -> str:
    return f"<!doctype html><html><head><title>t</title>{head}</head><body>{body}</body></html>"


HOSTILE = {
    "/": page(
        "".join(
            f'<a href="{p}">{p}</a> '
            for p in ("/dialogs", "/popup", "/download", "/offscope", "/refresh-a", "/private")
        )
    ),
    # The pages that take a render to its deadline, crawled on their own (a short one).
    "/slow": page('<a href="/loop">l</a> <a href="/hog">h</a>'),
    # A script that never arrives and requests that never stop, crawled apart from the
    # pages that spin the CPU: their DOM is read at the soft deadline, which a loaded
    # machine must still leave time for.
    "/dripping": page('<a href="/drip">d</a> <a href="/xhr-spam">x</a>'),
    # Allocates without end: the tab's script heap is capped, so it crashes in seconds.
    "/hog": page(
        "<h1>hog</h1><script>const keep = [];"
        "while (true) keep.push(new Array(1 << 20).fill(Math.random()));</script>"
    ),
    "/loop": page("<h1>before</h1><script>while (true) {}</script>"),
    "/drip": page('<h1>drip</h1><script src="/slow.js"></script>'),
    "/dialogs": page(
        "<h1 id=h>waiting</h1><script>"
        "window.onbeforeunload = e => { e.preventDefault(); return 'stay'; };"
        "alert('a'); const c = confirm('c'); const p = prompt('p');"
        "document.getElementById('h').textContent = 'after ' + c + ' ' + p;"
        "</script>"
    ),
    "/popup": page("<h1>popup</h1><script>window.open('/popped');</script>"),
    "/popped": page("<h1>popped</h1>"),
    "/download": page(
        "<h1>download</h1><script>"
        "const a = document.createElement('a'); a.href = '/file.bin'; a.download = 'f.bin';"
        "document.body.append(a); a.click();</script>"
    ),
    "/file.bin": Reply(
        body=b"\x00" * 4096,
        content_type="application/octet-stream",
        headers={"Content-Disposition": "attachment; filename=f.bin"},
    ),
    "/offscope": page(
        "<h1>offscope</h1><script>location.href = 'http://elsewhere.invalid/x';</script>"
    ),
    "/refresh-a": page("<h1>a</h1>", head='<meta http-equiv="refresh" content="0;url=/refresh-b">'),
    "/refresh-b": page("<h1>b</h1>", head='<meta http-equiv="refresh" content="0;url=/refresh-a">'),
    "/xhr-spam": page(
        "<h1>spam</h1><script>setInterval(() => fetch('/api/spam?' + Math.random()), 5);</script>"
    ),
    # A script that asks for the cloud metadata address: refused, the page goes on.
    "/private": page(
        "<h1 id=h>private</h1><script>fetch('http://169.254.169.254/latest/')"
        ".then(() => h.textContent = 'leaked', () => h.textContent = 'refused');</script>"
    ),
    "/robots.txt": Reply(404, ""),
}


@pytest.fixture
def hostile() -> Iterator[tuple[Site, threading.Event]]:
    release = threading.Event()

    def slow(request: Request) -> Reply:
        release.wait(60)  # the script never arrives while the page is rendered
        return Reply(body="document.title = 'late';", content_type="application/javascript")

    def spam(request: Request) -> Reply:
        return Reply(body="{}", content_type="application/json")

    with Site(dict(HOSTILE)) as site:
        site.routes["/slow.js"] = slow
        site.fallback = lambda r: spam(r) if r.path.startswith("/api/spam") else Reply(404, "")
        try:
            yield site, release
        finally:
            release.set()


def test_hostile_pages_are_each_recorded_once_and_the_crawl_ends(
    tmp_path: Path, hostile: tuple[Site, threading.Event], short_tmp: Path
) -> None:
    site, _release = hostile
    env = isolated_env(short_tmp, tmp_path / "home")
    work = tmp_path / "work"
    work.mkdir()
    out = []
    # The deadline is generous where pages end by themselves (a loaded machine is slow),
    # short where they do not.
    for start, timeout in (("/", "30"), ("/slow", "12"), ("/dripping", "20")):
        done = shoal("crawl", site.url(start), "-o", "pages.jsonl", "--render", "always",
                     "--render-timeout", timeout, "--render-concurrency", "3", "--retries", "0",
                     "--extract", "h=h1::text", "--no-state", "--overwrite",
                     cwd=work, env=env, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        out += records(work / "pages.jsonl")
    urls = [str(r["url"]).removeprefix(site.origin) for r in out]
    assert len(urls) == len(set(urls)), urls  # each once
    by = {str(r["url"]).removeprefix(site.origin): r for r in out}
    assert by["/loop"]["error"] == "render_timeout" and by["/loop"]["rendered"] is False
    # Read at the soft deadline; on a machine too loaded to leave time for that, the page's
    # deadline: either is the page's honest outcome, recorded once.
    if by["/drip"]["error"] is None:
        assert by["/drip"]["h"] == "drip" and by["/drip"]["rendered"] is True, by["/drip"]
    else:
        assert by["/drip"]["error"] == "render_timeout", by["/drip"]
    assert by["/dialogs"]["h"] == "after false null", by["/dialogs"]  # dialogs dismissed
    assert "/popped" in by and by["/popped"]["h"] == "popped"  # the popup's URL is a link
    assert by["/popup"]["rendered"] is True
    # The script's download is refused (nothing written: see below); its link is a URL
    # of the crawl like any other, fetched over HTTP and not rendered.
    assert by["/download"]["h"] == "download" and by["/download"]["rendered"] is True
    assert by["/file.bin"]["rendered"] is False and by["/file.bin"]["bytes"] == 4096
    assert by["/offscope"]["final_url"] == site.url("/offscope")  # stayed: not in scope
    assert by["/offscope"]["h"] == "offscope", {
        k: by["/offscope"][k] for k in ("error", "error_detail", "rendered", "bytes")
    }
    assert by["/offscope"]["error"] is None
    # The refresh to b is followed in place; b's refresh back to a is a loop, refused.
    assert by["/refresh-a"]["final_url"] == site.url("/refresh-b")
    assert by["/refresh-a"]["error"] == "redirect_loop", by["/refresh-a"]["error_detail"]
    assert by["/hog"]["error"] == "render_crash", by["/hog"]["error_detail"]
    spam = by["/xhr-spam"]  # requests that never stop: read at the soft deadline, as /drip
    assert (spam["h"] == "spam" and spam["error"] is None) or spam["error"] == "render_timeout"
    assert by["/private"]["h"] == "refused"
    assert not any("elsewhere" in u or "169.254" in u for u in urls)
    assert sorted(p.name for p in work.iterdir()) == ["pages.jsonl"]
    assert list(short_tmp.iterdir()) == [] and list((tmp_path / "home").iterdir()) == []
    assert no_browser_left(str(short_tmp)) == []


def rendering_drip(site: Site, tmp: Path, short: Path, stderr: int) -> subprocess.Popen[bytes]:
    """shoal rendering /drip (in ``tmp``, with TMPDIR ``short``), returned once the page is
    in the browser, its script dripping (killed if it never gets there)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal", "crawl", site.url("/drip"), "-o", "p.jsonl",
         "--render", "always", "--render-timeout", "60", "--max-depth", "0"],
        cwd=tmp, env=isolated_env(short, tmp / "home"), stdout=subprocess.DEVNULL,
        stderr=stderr,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while site.count("/slow.js") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert site.count("/slow.js") == 1
    except BaseException:
        proc.kill()
        raise
    return proc


def test_no_browser_survives_shoal_killed_with_sigkill(
    tmp_path: Path, hostile: tuple[Site, threading.Event], short_tmp: Path
) -> None:
    site, _release = hostile
    marker = str(short_tmp)
    proc = rendering_drip(site, tmp_path, short_tmp, stderr=subprocess.DEVNULL)
    try:
        assert browsers_of(marker)
        # shoal's own children: Playwright's driver and the browser's reaper.
        children = [p for p in os.listdir("/proc") if p.isdigit() and _parent(p) == proc.pid]
        assert children
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert no_browser_left(marker, wait=30.0) == []
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{p}") for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in children if os.path.exists(f"/proc/{p}")] == []
    # The profile went with the browser. (Playwright's driver leaves an empty
    # playwright-artifacts-* directory when killed: not the browser's, not cleaned yet.)
    assert [p.name for p in short_tmp.iterdir() if p.name.startswith("shoal-")] == []


def _parent(pid: str) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


def test_a_missing_browser_names_both_fixes(tmp_path: Path) -> None:
    done = shoal("crawl", "http://127.0.0.1:9/", "--render", "always",
                 "--browser", str(tmp_path / "no-such-chromium"), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "apt-get install chromium" in done.stderr
    assert "pip install 'shoal[render]'" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_static_crawl_never_imports_playwright(tmp_path: Path) -> None:
    code = """
        from sites import Site, html
        from shoal import Crawler
        with Site() as site:
            site.routes.update({"/": html("home", "/a"), "/a": html("a")})
            Crawler(site.url("/"), state=None, output=OUT, progress=False).run()
        import sys
        assert not any(m.startswith("playwright") for m in sys.modules), "playwright loaded"
        assert "shoal.crawler._render" not in sys.modules
    """.replace("OUT", repr(str(tmp_path / "o.jsonl")))
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=TESTS,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )
    assert out.returncode == 0, out.stderr


def test_sigterm_ends_a_render_crawl_with_its_browser(
    tmp_path: Path, hostile: tuple[Site, threading.Event], short_tmp: Path
) -> None:
    site, _release = hostile
    marker = str(short_tmp)
    proc = rendering_drip(site, tmp_path, short_tmp, stderr=subprocess.PIPE)
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert no_browser_left(marker, wait=10.0) == []
    assert list(short_tmp.iterdir()) == []


def test_a_scripts_post_and_webrtc_are_refused(tmp_path: Path, short_tmp: Path) -> None:
    """A page's script may read (GETs pass the crawl's rules) but not act: its POST and its
    beacon never reach a server (sent by the browser's own network code, they would follow
    redirects past the gate and --deny-private), and WebRTC, whose UDP goes around every
    proxy, is not there."""
    env = isolated_env(short_tmp, tmp_path / "home")
    work = tmp_path / "work"
    work.mkdir()
    script = (
        "<h1 id=h>waiting</h1><script>"
        "const rtc = typeof RTCPeerConnection;"
        "navigator.sendBeacon('/beacon', 'x');"
        "fetch('/api/act', {method: 'POST', body: 'x'})"
        ".then(r => r.text(), () => 'refused')"
        ".then(t => { document.getElementById('h').textContent = t + ' ' + rtc; });"
        "</script>"
    )
    with Site({"/": Reply(body=f"<!doctype html><title>t</title><body>{script}</body>"),
               "/robots.txt": Reply(404, "")}) as site:  # fmt: skip
        done = shoal("crawl", site.url("/"), "-o", "pages.jsonl", "--render", "always",
                     "--extract", "h=h1::text", "--no-state", cwd=work, env=env)  # fmt: skip
        assert done.returncode == 0, done.stderr
        asked = set(site.paths())
    (record,) = records(work / "pages.jsonl")
    assert record["h"] == "refused undefined", record
    assert "/api/act" not in asked and "/beacon" not in asked, asked
    assert no_browser_left(str(short_tmp)) == []
