#!/usr/bin/env python3
"""Local stand-ins for the outside services of the user-onboarding workflow, for trying it
on one machine (README, "The onboarding workflow, locally"). They are stand-ins, not the
services: nothing is charged and nothing leaves 127.0.0.1.

- A payment provider with the shape of the PaymentIntents API that process-payment calls
  (PAYMENT_API_URL=http://127.0.0.1:8125): POST /v1/payment_intents confirms a charge; it
  needs an Idempotency-Key and answers a repeated key with its first answer, as the real
  provider does. The payment method pm_card_chargeDeclined is declined (402, card_declined,
  insufficient_funds). With --down every call answers 503 (an outage).
- A webhook receiver for send-notification (NOTIFY_WEBHOOK_URL=http://127.0.0.1:8125/hook):
  prints what it receives and answers 200.

    python3 tests/stand-ins/local_services.py [--port 8125] [--down]
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

CHARGES: dict[str, tuple[int, dict]] = {}


class Handler(BaseHTTPRequestHandler):
    down = False

    def answer(self, status: int, body: dict, replayed: bool = False) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if replayed:
            self.send_header("Idempotent-Replayed", "true")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/hook":
            print(f"webhook: {body.decode(errors='replace')}", flush=True)
            return self.answer(200, {"ok": True})
        if self.path != "/v1/payment_intents":
            return self.answer(404, {"error": {"type": "invalid_request_error", "message": "unknown path"}})
        if Handler.down:
            return self.answer(503, {"error": {"type": "api_error", "message": "stand-in outage (--down)"}})
        key = self.headers.get("Idempotency-Key")
        if not key:
            return self.answer(400, {"error": {"type": "invalid_request_error", "message": "an Idempotency-Key is required"}})
        if key in CHARGES:
            status, answer = CHARGES[key]
            return self.answer(status, answer, replayed=True)
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        number = len(CHARGES) + 1
        if form.get("payment_method") == "pm_card_chargeDeclined":
            status, answer = 402, {"error": {
                "type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds.",
                "payment_intent": {"id": f"pi_declined_{number}", "status": "requires_payment_method"}}}
        else:
            status, answer = 200, {"id": f"pi_local_{number}", "object": "payment_intent", "status": "succeeded",
                                   "amount": int(form.get("amount", "0")), "currency": form.get("currency", "")}
        CHARGES[key] = (status, answer)
        print(f"payment {key}: {status} {answer.get('id') or answer['error']['code']}", flush=True)
        return self.answer(status, answer)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8125)
    parser.add_argument("--down", action="store_true", help="answer every payment with 503")
    args = parser.parse_args()
    Handler.down = args.down
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"stand-ins on http://127.0.0.1:{args.port} (payments{' DOWN' if args.down else ''}, /hook)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
