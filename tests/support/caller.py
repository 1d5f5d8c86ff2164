"""An unmodified application calling a service by name with httpx (no mesh knowledge).

``python -m tests.support.caller URL [--count N] [--header K:V] [--until FILE --max-seconds S]``
sends GET requests to URL one after another — ``--count`` of them, or, with ``--until``, until
FILE exists (bounded by ``--max-seconds`` and 20,000 requests) — and prints one JSON line:
``{"answers": {app or "HTTP <code>" or "error <kind>": n}, "requests": n}``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter

import httpx


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--until")
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    headers = dict(item.split(":", 1) for item in args.header)
    answers: Counter[str] = Counter()
    deadline = time.monotonic() + args.max_seconds
    sent = 0
    with httpx.Client(timeout=args.timeout, trust_env=False) as client:
        while sent < (20_000 if args.until else args.count) and time.monotonic() < deadline:
            if args.until and os.path.exists(args.until):
                break
            sent += 1
            try:
                response = client.get(args.url, headers=headers)
            except httpx.HTTPError as error:
                answers[f"error {type(error).__name__}"] += 1
                continue
            if response.status_code == 200:
                answers[str(response.json().get("app"))] += 1
            else:
                answers[f"HTTP {response.status_code}"] += 1
    print(json.dumps({"answers": dict(answers), "requests": sent}), flush=True)


if __name__ == "__main__":
    main()
