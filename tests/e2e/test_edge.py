"""The edge protection against the real server with its shipped limits (issue 17; SECURITY-TESTS
33 and 52): slow connections are closed within the header timeout, a flood from one address gets
429s while another client is still answered quickly, and requests the HTTP parser or the request
guard refuses never reach a handler.

Clients bind source addresses of their own on loopback (127.0.0.0/8 is all local on Linux), so
the per-address limits see an attacker spread over many addresses and a bystander apart from it.
"""
import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import requests

from conftest import PASSWORD

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def insecure_context():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def exchange(server, data, source="127.0.0.1", timeout=10):
    """Sends raw bytes over TLS and reads until the server closes or goes quiet; (status, headers, body)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout, source_address=(source, 0))
    response = b""
    with insecure_context().wrap_socket(sock, server_hostname="localhost") as tls:
        tls.sendall(data)
        while True:
            try:
                chunk = tls.recv(65536)
            except (socket.timeout, ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            response += chunk
            head, _, body = response.partition(b"\r\n\r\n")
            length = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                break
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), repr(response[:200])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def fd_count(server):
    return len(os.listdir(f"/proc/{server.proc.pid}/fd"))


def rss_mib(server):
    with open(f"/proc/{server.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def owner_with_webhook(server, path="inbox"):
    server.setup_owner()
    s = server.login()
    org = s.get(server.url + "/api/v1/orgs").json()["items"][0]["id"]
    project = s.post(server.url + f"/api/v1/orgs/{org}/projects", json={"name": "Edge"}).json()["id"]
    workflow = {"name": "Inbox", "nodes": [
        {"name": "Hook", "type": "flowstack.webhook", "typeVersion": 1, "parameters": {"method": "POST", "path": path, "respond": "immediately"}},
        {"name": "Done", "type": "flowstack.noOp", "typeVersion": 1, "parameters": {}}],
        "edges": [{"from": "Hook", "to": "Done"}]}
    made = s.post(server.url + f"/api/v1/projects/{project}/workflows", json=workflow)
    assert made.status_code == 201, made.text
    assert s.post(server.url + f"/api/v1/workflows/{made.json()['id']}/activate").status_code == 200
    return s, org, project


def executions(server, s, project):
    count, cursor = 0, None
    while True:
        page = s.get(server.url + f"/api/v1/projects/{project}/executions", params={"limit": 200, **({"cursor": cursor} if cursor else {})}).json()
        count += len(page["items"])
        cursor = page.get("nextCursor")
        if not cursor:
            return count


# Each is refused by the HTTP parser or the request guard with 400, with the security headers.
SMUGGLING = {
    "Content-Length with Transfer-Encoding":
        b"POST /webhook/inbox HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    "two Content-Lengths":
        b"POST /webhook/inbox HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
        b"Content-Length: 3\r\n\r\n{}x",
    "Transfer-Encoding that is not chunked":
        b"POST /webhook/inbox HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n",
    "bare CR in a header": b"POST /webhook/inbox HTTP/1.1\r\nHost: localhost\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n",
    "bare LF in a header": b"POST /webhook/inbox HTTP/1.1\r\nHost: localhost\r\nX-A: a\nContent-Length: 0\r\n\r\n",
    "obs-fold": b"POST /webhook/inbox HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n  folded\r\nContent-Length: 0\r\n\r\n",
    "space before the colon": b"POST /webhook/inbox HTTP/1.1\r\nHost: localhost\r\nContent-Length : 0\r\n\r\n",
    "NUL in the path": b"POST /webhook/in\x00box HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
    "NUL in a header": b"POST /webhook/inbox HTTP/1.1\r\nHost: localhost\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
    "encoded dot segments": b"POST /webhook/%2e%2e/webhook/inbox HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    "encoded slash": b"POST /webhook/in%2fbox HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    "overlong UTF-8 dot": b"POST /webhook/%c0%ae%c0%ae/inbox HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    "encoded NUL": b"POST /webhook/inbox%00 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
}


def test_the_door_refuses_smuggling_and_traversal_before_any_handler(make_server):
    server = make_server(edge_defaults=True).start()
    s, _, project = owner_with_webhook(server)
    for name, request in SMUGGLING.items():
        status, headers, body = exchange(server, request)
        assert status == 400, f"{name}: {status} {body[:200]!r}"
        assert headers.get("x-content-type-options") == "nosniff", f"{name}: {headers}"
        assert headers.get("strict-transport-security", "").startswith("max-age="), name
    # Unexpected methods, over-long URLs and header sections: typed refusals too.
    status, _, body = exchange(server, b"TRACE /webhook/inbox HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert status == 405 and json.loads(body)["error"]["code"] == "method_not_allowed"
    status, _, _ = exchange(server, b"GET /api/v1/me?q=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert status == 414
    padding = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(40))
    status, _, _ = exchange(server, b"GET /api/v1/me HTTP/1.1\r\nHost: localhost\r\n" + padding + b"Connection: close\r\n\r\n")
    assert status == 431
    # None of it became an execution; an ordinary call does.
    assert executions(server, s, project) == 0
    status, _, _ = exchange(server, b"POST /webhook/inbox HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                                    b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
    assert status == 200
    assert executions(server, s, project) == 1


# A bystander's calls, from its own address, in its own process (so the attackers' work in this
# one does not delay its clock): prints the latency of each call in milliseconds.
BYSTANDER = textwrap.dedent("""
    import http.client, json, ssl, sys, time
    port, key, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    context = ssl.create_default_context(cafile=sys.argv[4])
    connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=10, source_address=("127.0.0.1", 0))
    latencies, statuses, end = [], [], time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        connection.request("GET", "/api/v1/me", headers={"Authorization": "Bearer " + key})
        response = connection.getresponse()
        response.read()
        latencies.append((time.monotonic() - started) * 1000)
        statuses.append(response.status)
        time.sleep(0.04)
    print(json.dumps({"latencies": latencies, "statuses": statuses}))
""")

# One address flooding the API with invalid keys, each call claiming another X-Forwarded-For.
FLOODER = textwrap.dedent("""
    import collections, http.client, json, ssl, sys, time
    port, seconds = int(sys.argv[1]), float(sys.argv[2])
    context = ssl.create_default_context(cafile=sys.argv[3])
    connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=10, source_address=("127.0.0.250", 0))
    statuses, end, n = collections.Counter(), time.monotonic() + seconds, 0
    while time.monotonic() < end:
        n += 1
        connection.request("GET", "/api/v1/me", headers={"Authorization": "Bearer fsk_flood%d" % n,
                                                         "X-Forwarded-For": "198.51.100.%d" % (n % 250)})
        response = connection.getresponse()
        response.read()
        statuses[response.status] += 1
        if response.getheader("Connection", "").lower() == "close":
            connection.close()
    print(json.dumps(statuses))
""")


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


class SlowAttack:
    """Holds `tls` slow TLS connections (each sends a request's first line, then one header line a
    second and never finishes) and `tcp` connections that never start TLS, spread over source
    addresses 50 to an address, until the server closes them."""

    def __init__(self, port, tls=2000, tcp=200, per_address=50):
        self.port = port
        self.slots = [("127.0.%d.%d" % (1 + i // per_address // 200, 10 + (i // per_address) % 200), True) for i in range(tls)]
        self.slots += [("127.0.9.%d" % (10 + i // per_address), False) for i in range(tcp)]
        self.open = 0
        self.lifetimes = {True: [], False: []}
        self.failures = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self.main()), daemon=True)

    def start(self):
        self.thread.start()
        return self

    async def main(self):
        context = insecure_context()
        tasks = []
        for index, slot in enumerate(self.slots):
            tasks.append(asyncio.create_task(self.hold(*slot, context)))
            if index % 100 == 99:
                await asyncio.sleep(0.05)
        await asyncio.gather(*tasks)

    async def hold(self, source, tls, context):
        opened = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", self.port, ssl=context if tls else None, server_hostname="localhost" if tls else None,
                local_addr=(source, 0)), timeout=30)
        except (OSError, ssl.SSLError, asyncio.TimeoutError):
            self.failures += 1
            return
        self.open += 1
        try:
            if tls:
                writer.write(b"GET /api/v1/me HTTP/1.1\r\nHost: localhost\r\n")
            while True:
                try:
                    if not await asyncio.wait_for(reader.read(1024), timeout=1):
                        break
                except asyncio.TimeoutError:
                    if tls:
                        writer.write(b"X-Slow: 1\r\n")
                        await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            self.open -= 1
            self.lifetimes[tls].append(time.monotonic() - opened)
            writer.close()


def test_slow_connections_closed_in_time_and_a_bystander_still_served_under_flood(make_server):
    """SECURITY-TESTS 52 and 33: the shipped limits, with a header timeout of 20 s so that the
    bystander's calls all fall in the time the 2,200 slow connections are held open."""
    timeout = 20
    server = make_server(edge_defaults=True, env={"FLOWSTACK_HEADER_TIMEOUT_SECONDS": str(timeout)}).start()
    s, org, _ = owner_with_webhook(server)
    key = s.post(server.url + f"/api/v1/orgs/{org}/api-keys", json={"name": "bystander", "scope": "read"}).json()["key"]
    baseline_fds, baseline_rss = fd_count(server), rss_mib(server)

    started = time.monotonic()
    attack = SlowAttack(server.port).start()
    while attack.open < 2200 and time.monotonic() < started + 15:
        time.sleep(0.1)
    assert attack.open == 2200, f"only {attack.open} slow connections open ({attack.failures} failed)"
    opened_in = time.monotonic() - started
    held_fds, held_rss = fd_count(server), rss_mib(server)

    flooder = subprocess.Popen([sys.executable, "-c", FLOODER, str(server.port), "10", server.ca], stdout=subprocess.PIPE, text=True)
    bystander = subprocess.run([sys.executable, "-c", BYSTANDER, str(server.port), key, "10", server.ca],
                               capture_output=True, text=True, timeout=60)
    flood = json.loads(flooder.communicate(timeout=60)[0])
    assert bystander.returncode == 0, bystander.stderr
    calls = json.loads(bystander.stdout)
    open_after = attack.open

    p50, p99 = percentile(calls["latencies"], 0.5), percentile(calls["latencies"], 0.99)
    print(f"\n2,200 slow connections open in {opened_in:.1f} s, {open_after} still open after the flood; "
          f"server fds {baseline_fds} -> {held_fds}, RSS {baseline_rss} -> {held_rss} MiB")
    print(f"bystander: {len(calls['latencies'])} calls, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"worst {sorted(calls['latencies'])[-3:]}; flooder: {flood}")
    assert open_after == 2200, "slow connections were closed before the header timeout"
    assert set(calls["statuses"]) == {200}
    assert p99 < 100, f"bystander p99 {p99:.1f} ms"
    # The flood was answered, mostly with 429: the burst (200) and 50 a second, whatever X-Forwarded-For says.
    assert flood.get("429", 0) > 0 and flood.get("401", 0) <= 200 + 50 * 12, flood

    # Every slow connection is closed within the header timeout of opening (plus scheduling slack).
    attack.thread.join(timeout=timeout + 20)
    assert not attack.thread.is_alive(), f"{attack.open} slow connections still open after {timeout + 20} s"
    lifetimes = attack.lifetimes[True] + attack.lifetimes[False]
    assert len(attack.lifetimes[True]) == 2000 and len(attack.lifetimes[False]) == 200
    assert max(lifetimes) < timeout + 3, f"longest slow connection {max(lifetimes):.1f} s"
    assert min(lifetimes) > timeout - 1, f"shortest slow connection {min(lifetimes):.1f} s"
    deadline = time.monotonic() + 20
    while fd_count(server) > baseline_fds + 20 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert fd_count(server) <= baseline_fds + 20, f"fds {fd_count(server)} after the attack, {baseline_fds} before"
    assert requests.get(server.url + "/healthz", verify=server.ca, timeout=5).status_code == 200


def test_the_header_timeout_holds_with_its_default(make_server):
    """The shipped 10 s: a connection that never completes its headers is closed within it."""
    server = make_server(edge_defaults=True).start()
    attack = SlowAttack(server.port, tls=20, tcp=5, per_address=5).start()
    attack.thread.join(timeout=30)
    lifetimes = attack.lifetimes[True] + attack.lifetimes[False]
    assert len(lifetimes) == 25
    assert 9 < min(lifetimes) and max(lifetimes) < 13, lifetimes


def test_a_trickled_body_is_cut_at_the_body_timeout(make_server):
    """A body sent a byte a second never lets the connection idle, but it must end in time."""
    server = make_server(edge_defaults=True, env={"FLOWSTACK_BODY_TIMEOUT_SECONDS": "3"}).start()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    with insecure_context().wrap_socket(sock, server_hostname="localhost") as tls:
        tls.sendall(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100\r\n\r\n{")
        started = time.monotonic()
        closed_after = None
        while time.monotonic() - started < 15:
            try:
                tls.sendall(b" ")
            except (OSError, ssl.SSLError):
                closed_after = time.monotonic() - started
                break
            tls.settimeout(1)
            try:
                if tls.recv(4096) == b"":
                    closed_after = time.monotonic() - started
                    break
            except socket.timeout:
                pass
            except (OSError, ssl.SSLError):
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None, "the trickled body was still being read after 15 s"
    assert 2 < closed_after < 6, f"closed after {closed_after:.1f} s"
    # An ordinary body on a fresh connection is read as usual.
    r = requests.post(server.url + "/api/v1/auth/login", json={"email": "a@example.com", "password": "x" * 20}, verify=server.ca)
    assert r.status_code == 401


def test_connections_and_handshakes_are_limited_per_address(make_server):
    server = make_server(edge_defaults=True, env={"FLOWSTACK_CONNECTIONS_PER_ADDRESS": "10"}).start()
    context = insecure_context()

    def connect(source):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5, source_address=(source, 0))
        try:
            tls = context.wrap_socket(sock, server_hostname="localhost")
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            if not tls.recv(4096).startswith(b"HTTP/1.1 200"):
                raise ConnectionError("no answer")
            return tls
        except (OSError, ssl.SSLError):
            sock.close()
            return None

    held = [connect("127.0.2.1") for _ in range(10)]
    assert all(held)
    assert connect("127.0.2.1") is None, "an 11th connection from one address was served"
    assert connect("127.0.2.2") is not None, "another address was refused"
    held.pop().close()
    time.sleep(0.2)
    assert connect("127.0.2.1") is not None, "a freed slot was not given back"
    for connection in held:
        connection.close()

    # Handshakes: a burst of 60, then 20 a second, per address.
    started = time.monotonic()
    results = []
    for _ in range(120):
        connection = connect("127.0.2.3")
        results.append(connection is not None)
        if connection:
            connection.close()
    elapsed = time.monotonic() - started
    assert results[:60] == [True] * 60
    assert results.count(True) <= 60 + 20 * elapsed + 2, f"{results.count(True)} handshakes in {elapsed:.1f} s"
    assert connect("127.0.2.4") is not None


def test_webhook_flood_is_refused_before_it_becomes_executions(make_server):
    server = make_server(edge_defaults=True).start()
    s, _, project = owner_with_webhook(server)
    statuses = {}
    started = time.monotonic()
    with requests.Session() as flood:
        flood.trust_env = False
        flood.verify = server.ca
        for _ in range(1000):
            status = flood.post(server.url + "/webhook/inbox", json={"n": 1}).status_code
            statuses[status] = statuses.get(status, 0) + 1
    elapsed = time.monotonic() - started
    print(f"\n1,000 calls to one webhook in {elapsed:.1f} s: {statuses}")
    accepted = statuses.get(200, 0)
    assert statuses.get(429, 0) > 0
    # The address's burst (200) and its refill (50 a second) at the most; the webhook's own (400, 100/s) is larger.
    assert accepted <= 200 + 50 * elapsed + 5, f"{accepted} accepted in {elapsed:.1f} s"
    # Nothing accepted is lost, and nothing refused was stored.
    assert executions(server, s, project) == accepted


def test_webhooks_on_their_own_port(make_server):
    """--webhook-port: webhooks and resume calls there only; the API and the app not at all."""
    from conftest import free_port
    hook_port = free_port()
    server = make_server(edge_defaults=True, extra_args=["--webhook-port", str(hook_port)]).start()
    assert f"https://127.0.0.1:{hook_port}/webhook/" in server.read_output()
    s, _, project = owner_with_webhook(server)
    hooks = f"https://localhost:{hook_port}"
    elsewhere = s.post(server.url + "/webhook/inbox", json={"a": 1})
    assert elsewhere.status_code == 404 and elsewhere.json()["error"]["code"] == "webhook_elsewhere"
    assert s.post(hooks + "/webhook/inbox", json={"a": 1}).status_code == 200
    assert s.get(hooks + "/api/v1/me").status_code == 404
    assert s.post(hooks + "/api/v1/auth/login", json={"email": "owner@example.com", "password": PASSWORD}).status_code == 404
    assert s.get(hooks + "/healthz").status_code == 200
    # The same TLS 1.3 only listener, with the webhook answer's sandbox policy.
    context = insecure_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        with socket.create_connection(("127.0.0.1", hook_port), timeout=5) as sock:
            context.wrap_socket(sock, server_hostname="localhost")
    assert s.post(hooks + "/webhook/inbox", json={"a": 1}).headers["Content-Security-Policy"].startswith("sandbox")
    # A resume URL names the webhook port.
    workflow = {"name": "Hold", "nodes": [
        {"name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": {}},
        {"name": "Hold", "type": "flowstack.wait", "typeVersion": 1, "parameters": {"resume": "webhook"}}],
        "edges": [{"from": "Manual", "to": "Hold"}]}
    wf = s.post(server.url + f"/api/v1/projects/{project}/workflows", json=workflow).json()["id"]
    execution = s.post(server.url + f"/api/v1/workflows/{wf}/run?wait=true").json()["id"]
    url = s.get(server.url + f"/api/v1/executions/{execution}").json()["resumeUrl"]
    assert url.startswith(f"https://127.0.0.1:{hook_port}/webhook-waiting/{execution}/")
    assert s.post(url.replace("127.0.0.1", "localhost")).status_code == 200
    assert executions(server, s, project) == 3
