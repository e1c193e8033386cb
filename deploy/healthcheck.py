#!/usr/bin/env python3
"""Container health check: exit 0 when every URL given answers HTTP 2xx within 4 s.

Used by the image's HEALTHCHECK and by docker-compose (``driftline-healthcheck URL``); the slim
image has no curl, and a Python one-liner in YAML is harder to read than this.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request


def main(urls: list[str]) -> int:
    if not urls:
        print("usage: driftline-healthcheck URL [URL ...]", file=sys.stderr)
        return 2
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=4) as response:
                if not 200 <= response.status < 300:
                    print(f"{url}: HTTP {response.status}", file=sys.stderr)
                    return 1
        except (urllib.error.URLError, OSError) as exc:
            print(f"{url}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
