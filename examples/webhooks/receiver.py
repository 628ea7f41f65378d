"""A completion-webhook receiver that verifies each call, with the standard library only.

    python3 receiver.py PORT   # the secret in PROJECTENGINE_WEBHOOK_SECRET

Prints one JSON line per verified call ({"type", "job_id", "status", "artifacts"})
and answers 204; a call whose signature or timestamp does not verify gets 401.
Libraries of the Standard Webhooks specification (`pip install standardwebhooks`,
`npm i standardwebhooks`, …) do the same check as `verify` below.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


def verify(secret: str, headers, body: bytes, tolerance: int = 300) -> bool:
    """Standard Webhooks: v1 = base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id, ts = headers["webhook-id"], headers["webhook-timestamp"]
    if not msg_id or not ts or abs(time.time() - int(ts)) > tolerance:
        return False  # unsigned, too old, or from the future: a replay
    signed = f"{msg_id}.{ts}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(sig.removeprefix("v1,"), expected)
        for sig in (headers["webhook-signature"] or "").split()
        if sig.startswith("v1,")
    )


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"] or 0))
        if not verify(os.environ["PROJECTENGINE_WEBHOOK_SECRET"], self.headers, body):
            self.send_response(401)
            self.end_headers()
            return
        event = json.loads(body)
        data = event["data"]
        self.send_response(204)
        self.end_headers()
        print(json.dumps({
            "id": self.headers["webhook-id"],
            "type": event["type"],
            "job_id": data["job_id"],
            "status": data["status"],
            "artifacts": [a["name"] for a in data["artifacts"]],
        }), flush=True)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = HTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver)
    print("listening", flush=True)
    server.serve_forever()
