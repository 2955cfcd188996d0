"""A local stand-in for the Hugging Face hub, for testing `hf:` model sources.

usage: fake_hub.py ROOT PORT_FILE
Serves ROOT/<org>/<repo>/<file> at /<org>/<repo>/resolve/<revision>/<file> the
way huggingface.co does for hf-hub clients: Range requests (206 with
Content-Range), and the etag / x-repo-commit headers. Writes the port it
listens on to PORT_FILE, then serves until killed.
"""
import hashlib
import http.server
import os
import re
import sys

ROOT = sys.argv[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Hub(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        m = re.match(r"^/(.+)/resolve/([^/]+)/(.+)$", self.path)
        path = m and os.path.join(ROOT, m.group(1), m.group(3))
        if not path or not os.path.isfile(path):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = open(path, "rb").read()
        etag = hashlib.sha256(data).hexdigest()
        start, end = 0, len(data) - 1
        rng = self.headers.get("Range")
        if rng:
            a, b = rng.removeprefix("bytes=").split("-")
            start = int(a)
            end = min(int(b), len(data) - 1) if b else len(data) - 1
        body = data[start:end + 1]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("ETag", f'"{etag}"')
        self.send_header("x-repo-commit", COMMIT)
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(body)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
server.serve_forever()
