#!/usr/bin/env python3
"""A local stand-in for the Hugging Face Hub's HTTP API, for merge's tests (standard library only).

Serves the repositories described by a JSON file:

    {"repos": {"org/name": {"path": "/folder/of/files", "private": false, "gated": false}},
     "token": "secret",                       # the token private and gated repositories accept
     "corrupt_once": ["org/name/model.safetensors"],   # first GET sends a flipped byte
     "stall_once": {"org/name/model.safetensors": 4096},  # first GET sends N bytes, then hangs
     "redirect_lfs": true,                     # LFS files answer 302 to /lfs/..., as the Hub's CDN
     "redirect_to": {"org/name/config.json": "file:///x"}}  # a file answers 302 to that URL

Endpoints, as huggingface_hub uses them:
    GET /api/models/{org}/{name}/revision/{rev}?blobs=true   commit and file list (sizes, blob ids, LFS sha256)
    GET|HEAD /{org}/{name}/resolve/{rev}/{path}              a file, with Range support
    GET /_stats                                              {"body_bytes": n, "requests": [...]}

`.safetensors` files are served as LFS files (blob id = SHA-256); others by git blob id. The commit id
is derived from the files. Errors carry X-Error-Code as the Hub's do (RepoNotFound, GatedRepo,
RevisionNotFound, EntryNotFound). Prints the port it listens on and its process id, then serves until
killed.
"""
import os

# A server started while the test process spawns other children can inherit their pipes, and a
# reader waiting for the end of such a pipe would wait for this server: keep only stdio.
os.closerange(3, 65536)

import hashlib
import http.server
import json
import sys
import threading
import time
import urllib.parse

CONFIG = json.load(open(sys.argv[1]))
LOCK = threading.Lock()
STATS = {"body_bytes": 0, "requests": []}
USED = set()


def files_of(root):
    out = {}
    for folder, _, names in os.walk(root):
        for n in names:
            full = os.path.join(folder, n)
            rel = os.path.relpath(full, root)
            data = open(full, "rb").read()
            if rel.endswith(".safetensors"):
                out[rel] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "data": data}
            else:
                blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                out[rel] = {"size": len(data), "blob": blob, "data": data}
    return out


REPOS = {}
for rid, spec in CONFIG["repos"].items():
    files = files_of(spec["path"])
    commit = hashlib.sha1(json.dumps(sorted((k, v["size"]) for k, v in files.items())).encode() + rid.encode()).hexdigest()
    REPOS[rid] = {"spec": spec, "files": files, "commit": commit}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def fail(self, status, code, message="error"):
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def authorized(self, repo):
        spec = repo["spec"]
        token = self.headers.get("Authorization", "")
        good = token == "Bearer " + CONFIG.get("token", "")
        if spec.get("gated") and not good:
            self.fail(403 if token else 401, "GatedRepo", "gated")
            return False
        if spec.get("private") and not good:
            self.fail(401, "RepoNotFound", "Repository not found")
            return False
        return True

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        with LOCK:
            STATS["requests"].append({"method": self.command, "path": url.path, "range": self.headers.get("Range")})
        if parts == ["_stats"]:
            with LOCK:
                body = json.dumps(STATS).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if len(parts) >= 6 and parts[0] == "api" and parts[1] == "models" and parts[4] == "revision":
            return self.info(parts[2] + "/" + parts[3], "/".join(parts[5:]))
        if len(parts) >= 5 and parts[2] == "resolve":
            rid, name = parts[0] + "/" + parts[1], "/".join(parts[4:])
            f = REPOS.get(rid, {}).get("files", {}).get(name)
            target = CONFIG.get("redirect_to", {}).get(rid + "/" + name)
            if target:
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            # As the Hub does for LFS files: a redirect to the content store (another path here).
            if CONFIG.get("redirect_lfs") and f is not None and "sha256" in f:
                if self.repo(rid, parts[3]) is None:
                    return
                self.send_response(302)
                self.send_header("Location", "/lfs/%s/%s/%s" % (rid, parts[3], urllib.parse.quote(name)))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            return self.file(rid, parts[3], name)
        if len(parts) >= 5 and parts[0] == "lfs":
            return self.file(parts[1] + "/" + parts[2], parts[3], "/".join(parts[4:]), check=False)
        self.fail(404, None, "no such endpoint")

    def repo(self, rid, revision):
        repo = REPOS.get(rid)
        if repo is None:
            self.fail(401, "RepoNotFound", "Repository not found")
            return None
        if not self.authorized(repo):
            return None
        if revision not in ("main", repo["commit"]):
            self.fail(404, "RevisionNotFound", "Invalid rev id")
            return None
        return repo

    def info(self, rid, revision):
        repo = self.repo(rid, revision)
        if repo is None:
            return
        siblings = []
        for name, f in sorted(repo["files"].items()):
            entry = {"rfilename": name, "size": f["size"]}
            if "sha256" in f:
                entry["blobId"] = hashlib.sha1(f["sha256"].encode()).hexdigest()
                entry["lfs"] = {"sha256": f["sha256"], "size": f["size"], "pointerSize": 134}
            else:
                entry["blobId"] = f["blob"]
            siblings.append(entry)
        body = json.dumps({"id": rid, "sha": repo["commit"], "siblings": siblings}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def file(self, rid, revision, name, check=True):
        repo = self.repo(rid, revision) if check else REPOS.get(rid)
        if repo is None:
            return
        f = repo["files"].get(name)
        if f is None:
            return self.fail(404, "EntryNotFound", "Entry not found")
        data = f["data"]
        key = rid + "/" + name
        start, end, status = 0, len(data), 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start = int(a)
            end = min(len(data), int(b) + 1) if b else len(data)
            if start >= len(data):
                return self.fail(416, None, "range")
            status = 206
        body = data[start:end]
        once = None
        with LOCK:
            if self.command == "GET" and key not in USED:
                if key in CONFIG.get("corrupt_once", []) and start == 0 and status == 200:
                    once = "corrupt"
                if key in CONFIG.get("stall_once", {}) and status == 200:
                    once = "stall"
                if once:
                    USED.add(key)
        if once == "corrupt":
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, len(data)))
        self.send_header("X-Repo-Commit", repo["commit"])
        self.send_header("ETag", '"%s"' % f.get("sha256", f.get("blob")))
        self.end_headers()
        if self.command == "HEAD":
            return
        if once == "stall":
            n = CONFIG["stall_once"][key]
            self.wfile.write(body[:n])
            self.wfile.flush()
            with LOCK:
                STATS["body_bytes"] += n
            time.sleep(3600)
            return
        self.wfile.write(body)
        with LOCK:
            STATS["body_bytes"] += len(body)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], os.getpid(), flush=True)
server.serve_forever()
