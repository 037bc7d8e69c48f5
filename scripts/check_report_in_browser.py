#!/usr/bin/env python3
"""Open a report.html in a real headless Chromium and check that every <img> rendered.

    python scripts/check_report_in_browser.py ENS_DIR/report.html [--screenshot page.png]

A temporary copy of the report, in an empty folder, gets one small script that
runs after `load` and writes, for each <img>, whether it loaded (complete,
naturalWidth > 0) and whether it is drawn at its own aspect ratio (not
squashed). Chromium prints the DOM after load (--dump-dom) and this script reads
the result back. The copy sits alone in its folder and every host name is
mapped to nothing, so a report that leans on a relative file or a URL fails.
Prints one OK/FAIL line per image; the exit status is 1 on any failure, 2 when
Chromium is missing or does not run.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MARKER = "__img_check__"
PROBE = """
<script>
window.addEventListener("load", function () {
  var out = {height: document.documentElement.scrollHeight, images: []};
  Array.prototype.forEach.call(document.images, function (img) {
    var box = img.getBoundingClientRect();
    out.images.push({id: img.id, alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth,
                     naturalHeight: img.naturalHeight, width: box.width, height: box.height,
                     inline: img.getAttribute("src").indexOf("data:") === 0});
  });
  var pre = document.createElement("pre");
  pre.id = "%s";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
""" % MARKER
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
)


def find_browser(explicit: str | None) -> str | None:
    if explicit:
        return shutil.which(explicit) or (explicit if Path(explicit).is_file() else None)
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def run_browser(browser: str, args: list[str], profile: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    cmd = [browser, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def probe(report: Path, browser: str, workdir: Path, timeout: float, width: int) -> dict:
    """Load a copy of the report with PROBE appended and return what PROBE wrote."""
    page = report.read_text(encoding="utf-8")
    cut = page.rfind("</body>")
    copy = workdir / "page" / report.name
    copy.parent.mkdir()
    copy.write_text(page[:cut] + PROBE + page[cut:] if cut >= 0 else page + PROBE, encoding="utf-8")
    args = ["--dump-dom", f"--window-size={width},1000", "--virtual-time-budget=5000", copy.as_uri()]
    done = run_browser(browser, args, workdir / "profile-dom", timeout)
    found = re.search(rf'<pre id="{MARKER}">(.*?)</pre>', done.stdout, re.S)
    if not found:
        raise RuntimeError(
            f"{browser} exited {done.returncode} without the probe's result; its stderr ends:\n"
            + "\n".join(done.stderr.strip().splitlines()[-15:])
        )
    return json.loads(html.unescape(found.group(1)))


def check_image(img: dict) -> list[str]:
    """Why an image is not rendered right; empty when it is."""
    problems = []
    if not img["inline"]:
        problems.append("src is not a data: URI (the report is not self-contained)")
    if not (img["complete"] and img["naturalWidth"] > 0):
        problems.append(f"did not load (complete={img['complete']}, naturalWidth={img['naturalWidth']})")
    elif img["width"] < 1 or img["height"] < 1:
        problems.append(f"drawn at {img['width']:.0f}x{img['height']:.0f} px")
    else:
        natural = img["naturalWidth"] / img["naturalHeight"]
        shown = img["width"] / img["height"]
        if abs(shown / natural - 1) > 0.02:
            problems.append(f"squashed: drawn at aspect {shown:.3f}, image has {natural:.3f}")
    if not img["alt"]:
        problems.append("no alt text")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="the report.html to check")
    parser.add_argument("--screenshot", type=Path, help="also save a full-page PNG screenshot here")
    parser.add_argument("--width", type=int, default=1280, help="window width, in CSS px (default 1280)")
    parser.add_argument("--browser", help="Chromium executable (default: chromium on PATH)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per browser run")
    args = parser.parse_args(argv)

    if not args.report.is_file():
        print(f"{args.report} is not a file", file=sys.stderr)
        return 2
    browser = find_browser(args.browser)
    if browser is None and args.browser:
        print(f"--browser {args.browser} is not an executable", file=sys.stderr)
        return 2
    if browser is None:
        print("no Chromium found (looked for " + ", ".join(BROWSERS) + "); on Debian/Ubuntu install it with\n"
              "    sudo apt-get install -y chromium\nor pass --browser PATH", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="report-check-") as tmp:
        workdir = Path(tmp)
        try:
            result = probe(args.report.resolve(), browser, workdir, args.timeout, args.width)
        except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
            print(f"FAIL  could not load {args.report} in {browser}: {e}", file=sys.stderr)
            return 2
        images = result["images"]
        bad = 0
        if not images:
            print("FAIL  the page has no <img>")
        for img in images:
            problems = check_image(img)
            bad += bool(problems)
            size = f"{img['naturalWidth']}x{img['naturalHeight']} shown {img['width']:.0f}x{img['height']:.0f}"
            print(f"{'FAIL' if problems else 'OK  '}  {img['id'] or '(no id)':<16} {size}"
                  + (": " + "; ".join(problems) if problems else ""))

        failures = bad + (not images)
        if args.screenshot:
            height = max(600, min(int(result["height"]), 16000))
            shot = args.screenshot.resolve()
            done = run_browser(browser, [f"--screenshot={shot}", f"--window-size={args.width},{height}",
                                         "--virtual-time-budget=5000", args.report.resolve().as_uri()],
                               workdir / "profile-shot", args.timeout)
            if done.returncode != 0 or not shot.is_file():
                print(f"FAIL  screenshot: {browser} exited {done.returncode}", file=sys.stderr)
                failures += 1
            else:
                print(f"screenshot {shot} ({args.width}x{height})")
    print(f"{len(images) - bad} of {len(images)} images rendered" + (f"; {failures} failure(s)" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
