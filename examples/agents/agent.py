#!/usr/bin/env python3
"""A projectEngine agent in Python, standard library only.

It claims a job over the agent protocol (/api/agent/v1/), reports a stage,
steps, progress and logs in numbered batches, heartbeats, uploads an
artifact, publishes an App and finishes. Every call of an attempt carries
the attempt token the claim answered; a 409 `stale_attempt` means the
attempt lost its lease, and the agent stops at once.

    AGENT_TOKEN=$(cargo run --example server -- token --sub desk --agent --kinds remote)
    python3 examples/agents/agent.py --url http://127.0.0.1:8080 --once

Options: --url, --kinds (comma-separated; default: the token's), --wait
(seconds a claim waits), --once (one job, then exit; exit code 3 when none
came), --resend-batch (send each batch twice, as a retry after a lost answer
would: the server applies it once).
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


class Stale(Exception):
    """The attempt lost its lease: 409 stale_attempt."""


class Refused(Exception):
    """The server refused a request."""


class Client:
    def __init__(self, url, timeout=30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def call(self, method, path, token, body=None, content_type="application/json",
             timeout=None, tries=5):
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        delay = 0.1
        for attempt in range(tries):
            request = urllib.request.Request(self.url + path, data=data, method=method)
            request.add_header("Authorization", "Bearer " + token)
            if data is not None:
                request.add_header("Content-Type", content_type)
            try:
                with urllib.request.urlopen(request, timeout=timeout or self.timeout) as res:
                    raw = res.read()
                    return res.status, (json.loads(raw) if raw else None)
            except urllib.error.HTTPError as e:
                raw = e.read()
                try:
                    error = json.loads(raw)["error"]
                except (ValueError, KeyError, TypeError):
                    error = {"code": "unknown", "message": raw.decode(errors="replace")}
                if e.code == 409 and error.get("code") == "stale_attempt":
                    raise Stale(error.get("message"))
                if e.code in (502, 503, 504) and attempt + 1 < tries:
                    pass
                else:
                    raise Refused("%d %s: %s" % (e.code, error.get("code"), error.get("message")))
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                if attempt + 1 >= tries:
                    raise
                print("retrying after %s" % e, file=sys.stderr)
            time.sleep(delay)
            delay = min(delay * 2, 3.0)
        raise Refused("no answer")

    def claim(self, agent_token, kinds, wait):
        body = {"wait_s": wait}
        if kinds:
            body["kinds"] = kinds
        status, context = self.call("POST", "/api/agent/v1/claim", agent_token, body,
                                    timeout=self.timeout + wait)
        return context if status == 200 else None


class Attempt:
    """One claimed attempt: numbered batches, heartbeat, artifact, App, finish."""

    def __init__(self, client, context, resend_batch=False):
        self.client = client
        self.context = context
        self.token = context["attempt_token"]
        self.batch = 0
        self.resend_batch = resend_batch
        self.heartbeat_s = float(context["heartbeat_s"])
        self.last_beat = time.monotonic()

    def post(self, path, body):
        return self.client.call("POST", "/api/agent/v1/attempt/" + path, self.token, body)[1]

    def heartbeat(self):
        """Renews the lease; True when the owner asked to cancel."""
        self.last_beat = time.monotonic()
        return self.post("heartbeat", {})["cancel_requested"]

    def maybe_heartbeat(self):
        if time.monotonic() - self.last_beat >= self.heartbeat_s:
            return self.heartbeat()
        return False

    def events(self, *events):
        """Sends one numbered batch; a resend keeps its number."""
        self.batch += 1
        body = {"batch": self.batch, "events": list(events)}
        reply = self.post("events", body)
        if self.resend_batch:
            again = self.post("events", body)
            assert not again["applied"], "a resent batch must not be applied twice"
        return reply

    def artifact(self, name, data, content_type):
        path = "/api/agent/v1/attempt/artifacts/" + urllib.parse.quote(name)
        return self.client.call("PUT", path, self.token, data, content_type=content_type)[1]

    def app(self, name, payload):
        return self.post("app", {"name": name, "payload": payload})

    def finish(self, outcome, code=None, message=None, retry_after_s=None):
        body = {"outcome": outcome}
        if code is not None:
            body["code"] = code
        if message is not None:
            body["message"] = message
        if retry_after_s is not None:
            body["retry_after_s"] = retry_after_s
        return self.post("finish", body)


def stage(name):
    return {"type": "stage", "data": {"stage": name}}


def step(name, status="completed"):
    return {"type": "step", "data": {"name": name, "status": status}}


def progress(percent):
    return {"type": "progress", "data": {"progress": percent}}


def log(message, level="info"):
    return {"type": "log", "data": {"level": level, "message": message}}


def run(attempt):
    """The orchestrator: a few steps, a report artifact, the App."""
    job = attempt.context["job"]
    steps = int(job["params"].get("steps", 3))
    attempt.events(stage("PLANNING"), log("python agent took job %s" % job["id"]))
    for i in range(1, steps + 1):
        if attempt.maybe_heartbeat():
            attempt.finish("cancelled")
            return "cancelled"
        time.sleep(float(job["params"].get("delay_s", 0)))
        attempt.events(step("step %d of %d" % (i, steps)), progress(i * 100 // steps))
    if attempt.heartbeat():
        attempt.finish("cancelled")
        return "cancelled"
    report = ("prompt: %s\nsteps: %d\n" % (job["prompt"], steps)).encode()
    attempt.artifact("report/summary.txt", report, "text/plain")
    attempt.app("python-result", {"prompt": job["prompt"], "steps": steps, "language": "python"})
    attempt.finish("succeeded")
    return "succeeded"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("PROJECTENGINE_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--kinds", default="")
    parser.add_argument("--wait", type=int, default=20)
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--resend-batch", action="store_true")
    args = parser.parse_args()
    token = os.environ.get("AGENT_TOKEN")
    if not token:
        print("agent: set AGENT_TOKEN to an agent token", file=sys.stderr)
        return 2
    kinds = [k for k in args.kinds.split(",") if k]
    client = Client(args.url)
    while True:
        context = client.claim(token, kinds, args.wait)
        if context is None:
            if args.once:
                print("agent: no job came", file=sys.stderr)
                return 3
            continue
        attempt = Attempt(client, context, resend_batch=args.resend_batch)
        try:
            outcome = run(attempt)
        except Stale:
            outcome = "lost"
        except Exception as e:  # a failure of the orchestrator: retryable
            try:
                attempt.finish("retryable", code="python_error", message=str(e))
            except Stale:
                pass
            outcome = "failed: %s" % e
        print(json.dumps({"job": context["job"]["id"], "attempt": context["attempt"],
                          "outcome": outcome}))
        sys.stdout.flush()
        if args.once:
            return 0


if __name__ == "__main__":
    sys.exit(main())
