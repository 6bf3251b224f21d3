#!/usr/bin/env python3
"""A local stand-in for the part of GitHub's REST API that Examples/ci/post-report uses, for
merge's tests (standard library only): the comments of pull requests (issues), in memory.

    GET   /repos/{owner}/{repo}/issues/{n}/comments      the comments
    POST  /repos/{owner}/{repo}/issues/{n}/comments      {"body": ...} → a new comment
    PATCH /repos/{owner}/{repo}/issues/comments/{id}     {"body": ...} → that comment, updated
    GET   /_state                                        {"comments": [...], "requests": [...]}

Writes need `Authorization: Bearer {token}` (the config's); any other token gets 403, as the
read-only token of a pull request from a fork does. Prints its port and process id.
"""
import os

os.closerange(3, 65536)

import http.server
import json
import re
import sys
import threading

CONFIG = json.load(open(sys.argv[1]))
LOCK = threading.Lock()
COMMENTS = []
REQUESTS = []


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, status, value):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length", "0"))
        return json.loads(self.rfile.read(n) or b"{}")

    def writer(self):
        return self.headers.get("Authorization", "") == "Bearer " + CONFIG["token"]

    def handle_any(self, method):
        if self.path == "/_state":
            with LOCK:
                return self.send(200, {"comments": COMMENTS, "requests": REQUESTS})
        with LOCK:
            REQUESTS.append(method + " " + self.path)
        listing = re.fullmatch(r"/repos/[^/]+/[^/]+/issues/(\d+)/comments(\?.*)?", self.path)
        single = re.fullmatch(r"/repos/[^/]+/[^/]+/issues/comments/(\d+)", self.path)
        if method == "GET" and listing:
            with LOCK:
                return self.send(200, [c for c in COMMENTS if c["issue"] == int(listing.group(1))])
        if method in ("POST", "PATCH") and not self.writer():
            return self.send(403, {"message": "Resource not accessible by integration"})
        if method == "POST" and listing:
            data = self.body()
            with LOCK:
                comment = {"id": len(COMMENTS) + 1, "issue": int(listing.group(1)), "body": data["body"]}
                COMMENTS.append(comment)
            return self.send(201, comment)
        if method == "PATCH" and single:
            data = self.body()
            with LOCK:
                for c in COMMENTS:
                    if c["id"] == int(single.group(1)):
                        c["body"] = data["body"]
                        return self.send(200, c)
            return self.send(404, {"message": "Not Found"})
        self.send(404, {"message": "Not Found"})

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PATCH(self):
        self.handle_any("PATCH")


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], os.getpid(), flush=True)
server.serve_forever()
