"""The engine against the real binary: kill -9 mid-node and restart (SECURITY-TESTS 35), webhooks,
and the HTTP Request node's SSRF guard over real loopback HTTP (27)."""
import http.server
import signal
import threading
import time

from conftest import free_port


class Recorder:
    """A local HTTP server standing in for remote APIs: counts hits per path; /slow takes 4 s."""

    def __init__(self):
        self.hits = {}
        self.lock = threading.Lock()
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with recorder.lock:
                    recorder.hits[self.path] = recorder.hits.get(self.path, 0) + 1
                if self.path.startswith("/slow"):
                    time.sleep(4)
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def count(self, path):
        with self.lock:
            return self.hits.get(path, 0)

    def close(self):
        self.httpd.shutdown()


def chain(port):
    step = lambda name, path: {"name": name, "type": "flowstack.httpRequest", "typeVersion": 1,
                               "parameters": {"url": f"http://127.0.0.1:{port}{path}"}}
    return {"name": "Chain", "nodes": [{"name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": {}},
                                       step("A", "/a"), step("Slow", "/slow"), step("C", "/c")],
            "edges": [{"from": "Manual", "to": "A"}, {"from": "A", "to": "Slow"}, {"from": "Slow", "to": "C"}]}


def project_of(server):
    org = server.setup_owner()["organization"]["id"]
    s = server.login()
    r = s.post(server.url + f"/api/v1/orgs/{org}/projects", json={"name": "P"})
    assert r.status_code == 201, r.text
    return r.json()["id"], s


def test_kill_9_mid_node_resumes_after_restart(make_server):
    remote = Recorder()
    try:
        args = ["--http-allow", "127.0.0.1/32"]
        env = {"FLOWSTACK_LEASE_SECONDS": "3"}
        server = make_server(extra_args=args, env=env).start()
        project, s = project_of(server)
        workflow = s.post(server.url + f"/api/v1/projects/{project}/workflows", json=chain(remote.port)).json()["id"]
        accepted = s.post(server.url + f"/api/v1/workflows/{workflow}/run", json={"items": [{"n": 1}]})
        assert accepted.status_code == 202, accepted.text
        execution = accepted.json()["id"]
        deadline = time.time() + 20
        while remote.count("/slow") == 0 and time.time() < deadline:
            time.sleep(0.05)
        assert remote.count("/a") == 1 and remote.count("/slow") == 1
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()

        restarted = make_server(extra_args=args, env=env).start()
        s = restarted.login()
        deadline = time.time() + 60
        status = None
        while time.time() < deadline:
            body = s.get(restarted.url + f"/api/v1/executions/{execution}").json()
            status = body["status"]
            if status in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.2)
        assert status == "succeeded", body
        # A completed before the crash and did not run again; Slow was running and ran again; C ran once.
        assert remote.count("/a") == 1
        assert remote.count("/slow") == 2
        assert remote.count("/c") == 1
        assert [n["node"] for n in body["nodes"]] == ["Manual", "A", "Slow", "C"]
    finally:
        remote.close()


def test_http_request_node_refuses_private_addresses_without_allowlist(make_server):
    remote = Recorder()
    try:
        server = make_server().start()
        project, s = project_of(server)
        for host in ["127.0.0.1", "0x7f.1", "2130706433", "[::ffff:127.0.0.1]", "localhost"]:
            workflow = {"name": "SSRF", "nodes": [
                {"name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": {}},
                {"name": "Fetch", "type": "flowstack.httpRequest", "typeVersion": 1, "parameters": {"url": f"http://{host}:{remote.port}/secret"}}],
                "edges": [{"from": "Manual", "to": "Fetch"}]}
            wf = s.post(server.url + f"/api/v1/projects/{project}/workflows", json=workflow).json()["id"]
            result = s.post(server.url + f"/api/v1/workflows/{wf}/run?wait=true").json()
            assert result["status"] == "failed", (host, result)
            assert "blocked" in result["error"] or "refused" in result["error"] or "not allowed" in result["error"], result["error"]
        assert remote.count("/secret") == 0
    finally:
        remote.close()


def test_webhook_round_trip(make_server):
    server = make_server().start()
    project, s = project_of(server)
    greet = {"name": "Greet", "nodes": [
        {"name": "Hook", "type": "flowstack.webhook", "typeVersion": 1, "parameters": {"method": "POST", "path": "greet", "respond": "lastNode"}},
        {"name": "Shape", "type": "flowstack.set", "typeVersion": 1, "parameters": {"fields": {"greeting": "Hello {{ $json.body.name }}"}}}],
        "edges": [{"from": "Hook", "to": "Shape"}]}
    wf = s.post(server.url + f"/api/v1/projects/{project}/workflows", json=greet).json()["id"]
    assert s.post(server.url + f"/api/v1/workflows/{wf}/activate").status_code == 200
    anonymous = server.session()
    r = anonymous.post(server.url + "/webhook/greet", json={"name": "Ada"}, headers={"Authorization": "Bearer not-for-the-workflow"})
    assert r.status_code == 200, r.text
    assert r.json()["greeting"] == "Hello Ada"
    # Credentials sent with the request never reach workflow data.
    assert "authorization" not in r.json()["headers"]
