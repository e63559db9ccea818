"""Load generator: a steady payment rate against the gateway, with Luhn-valid test PANs.

Card numbers are test PANs (issuer prefixes of the card schemes' test ranges with a Luhn check
digit), sent in the JSON body or, for every third payment, in the URL's ``card`` parameter, so
redaction is exercised on what the standard instrumentations record (``url.full``, log bodies).
Not instrumented: it plays the clients outside the system. Prints one JSON line of counts on
exit (SIGTERM or ``--seconds``).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

TEST_BINS = ("411111", "555555", "378282", "601111", "400000")
MERCHANT_CLASSES = ("retail", "travel", "grocery", "fuel", "digital", "dining")


def luhn_complete(prefix: str) -> str:
    """``prefix`` plus its Luhn check digit."""
    total = 0
    for index, char in enumerate(reversed(prefix)):
        digit = int(char)
        if index % 2 == 0:
            digit *= 2
            digit -= 9 if digit > 9 else 0
        total += digit
    return prefix + str((10 - total % 10) % 10)


def test_pan(rng: random.Random) -> str:
    bin_ = rng.choice(TEST_BINS)
    body = "".join(str(rng.randrange(10)) for _ in range(15 - len(bin_)))
    return luhn_complete(bin_ + body)


def main() -> None:
    parser = argparse.ArgumentParser(prog="loadgen")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--rate", type=float, default=10.0, help="payments per second")
    parser.add_argument("--seconds", type=float, default=0.0, help="0: until SIGTERM")
    parser.add_argument("--accounts", type=int, default=50)
    args = parser.parse_args()
    config = json.loads(args.config.read_text(encoding="utf-8"))
    url = f"http://127.0.0.1:{config['gateway']['port']}/v1/payments"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    counts: dict[str, int] = {}
    lock = threading.Lock()
    rng = random.Random()  # noqa: S311 - test data, not secrets

    def one(seq: int) -> None:
        pan = test_pan(rng)
        body = {
            "payment_id": f"pay-{uuid.uuid4().hex[:16]}",
            "account": rng.randrange(1, args.accounts + 1),
            "amount": round(rng.uniform(1, 200), 2),
            "merchant_class": rng.choice(MERCHANT_CLASSES),
        }
        params = {}
        if seq % 3 == 0:
            params["card"] = pan
        else:
            body["card_number"] = pan
        headers = {"X-Forwarded-For": f"10.0.{rng.randrange(4)}.{rng.randrange(1, 250)}"}
        try:
            answer = requests.post(url, json=body, params=params, headers=headers, timeout=10)
            outcome = str(answer.status_code)
        except requests.RequestException as error:
            outcome = type(error).__name__
        with lock:
            counts[outcome] = counts.get(outcome, 0) + 1

    deadline = time.monotonic() + args.seconds if args.seconds else float("inf")
    interval = 1.0 / args.rate
    next_at = time.monotonic()
    seq = 0
    threads: list[threading.Thread] = []
    while not stop.is_set() and time.monotonic() < deadline:
        thread = threading.Thread(target=one, args=(seq,), daemon=True)
        thread.start()
        threads.append(thread)
        threads = [t for t in threads if t.is_alive()]
        seq += 1
        next_at += interval
        stop.wait(max(0.0, next_at - time.monotonic()))
    for thread in threads:
        thread.join(timeout=10)
    print(json.dumps({"sent": seq, "outcomes": counts}), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
