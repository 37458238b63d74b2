"""The real binary: first start, TLS 1.3 only, plain-HTTP refusal, headers, restarts, keys."""
import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import time

import pytest
import requests

from conftest import PASSWORD, Server


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_first_start_creates_private_files_and_prints_token_url_and_fingerprint(server, backend):
    out = server.read_output()
    assert f"https://127.0.0.1:{server.port}/" in out
    fingerprint = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", server.ca],
                                 capture_output=True, text=True, check=True).stdout.strip().split("=", 1)[1]
    assert fingerprint in out
    token = server.setup_token()
    assert mode(server.data_dir) == 0o700
    for name in ["keyring.json", "setup-token", "tls/server.key", "tls/server.crt"]:
        assert mode(os.path.join(server.data_dir, name)) == 0o600, name
    with open(os.path.join(server.data_dir, "setup-token")) as f:
        assert f.read().strip() == token
    if backend == "sqlite":
        assert mode(os.path.join(server.data_dir, "flowstack.sqlite")) == 0o600
    assert token not in open(os.path.join(server.data_dir, "keyring.json")).read()


def handshake(port, version):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = version
    context.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            return tls.version()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_tls_1_3_only(server):
    assert handshake(server.port, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        handshake(server.port, ssl.TLSVersion.TLSv1_2)
    tls12 = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-tls1_2"],
                           input="", capture_output=True, text=True, timeout=20)
    assert tls12.returncode != 0
    assert "alert protocol version" in tls12.stdout + tls12.stderr
    tls13 = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-tls1_3", "-CAfile", server.ca],
                           input="", capture_output=True, text=True, timeout=20)
    assert tls13.returncode == 0
    assert "TLSv1.3" in tls13.stdout


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_plain_http_is_refused_without_redirect_data_or_cookies(server):
    for method in ["GET", "POST", "DELETE"]:
        for path in ["/", "/api/v1/me", "/api/v1/auth/login", "/healthz", "/anything?x=1"]:
            r = requests.request(method, f"http://127.0.0.1:{server.http_port}{path}", allow_redirects=False, timeout=5,
                                 json={"email": "a@example.com", "password": "x"} if method == "POST" else None)
            assert r.status_code == 403
            assert "Location" not in r.headers
            assert "Set-Cookie" not in r.headers
            body = r.json()
            assert body["error"]["code"] == "https_required"
            assert f"https://127.0.0.1:{server.port}/" in body["error"]["message"]
    curl = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", f"http://127.0.0.1:{server.http_port}/"],
                          capture_output=True, text=True)
    assert curl.stdout.strip() == "403"
    # The HTTPS port does not speak plain HTTP either.
    with pytest.raises(requests.RequestException):
        r = requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
        assert r.status_code != 200


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_security_headers_and_no_server_version(server):
    for path in ["/healthz", "/api/v1/me", "/nope"]:
        r = requests.get(server.url + path, verify=server.ca, timeout=5)
        assert r.headers["Strict-Transport-Security"].startswith("max-age=63072000")
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
        assert "Server" not in r.headers
    assert requests.get(server.url + "/readyz", verify=server.ca).json() == {"status": "ready", "database": "ok", "worker": "ok"}


def test_owner_setup_login_api_key_with_curl(server, backend):
    token = server.setup_token()
    base = ["curl", "-s", "--cacert", server.ca]
    setup = subprocess.run(base + ["-H", "Content-Type: application/json", "-d",
                                   json.dumps({"token": token, "email": "o@example.com", "password": PASSWORD, "name": "O", "organization": "Acme"}),
                                   server.url + "/api/v1/setup"], capture_output=True, text=True, check=True)
    org = json.loads(setup.stdout)["organization"]["id"]
    assert not os.path.exists(os.path.join(server.data_dir, "setup-token"))
    again = subprocess.run(base + ["-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/json", "-d",
                                   json.dumps({"token": token, "email": "p@example.com", "password": PASSWORD, "name": "P", "organization": "B"}),
                                   server.url + "/api/v1/setup"], capture_output=True, text=True)
    assert again.stdout == "409"
    s = server.login("o@example.com")
    cookie = s.cookies.get("__Host-flowstack_session")
    assert cookie and cookie.startswith("fss_")
    key = s.post(server.url + f"/api/v1/orgs/{org}/api-keys", json={"name": "cli", "scope": "read"}).json()["key"]
    me = subprocess.run(base + ["-H", f"Authorization: Bearer {key}", server.url + "/api/v1/me"], capture_output=True, text=True, check=True)
    assert json.loads(me.stdout)["user"]["email"] == "o@example.com"
    denied = subprocess.run(base + ["-o", "/dev/null", "-w", "%{http_code}", "-H", f"Authorization: Bearer {key}", "-H", "Content-Type: application/json",
                                    "-d", '{"name":"x"}', server.url + f"/api/v1/orgs/{org}/projects"], capture_output=True, text=True)
    assert denied.stdout == "403"
    # The key never reaches the log.
    assert key not in server.read_output()
    r = requests.get(server.url + f"/api/v1/me?api_key={key}", verify=server.ca)
    assert r.status_code == 400
    assert key not in server.read_output()
    assert PASSWORD not in server.read_output()


def test_restart_keeps_data_and_stops_cleanly_on_sigterm(make_server, backend):
    first = make_server().start()
    owner = first.setup_owner()
    s = first.login()
    project = s.post(first.url + f"/api/v1/orgs/{owner['organization']['id']}/projects", json={"name": "Kept", "description": "MARKER-kept"}).json()
    started = time.time()
    first.proc.send_signal(signal.SIGTERM)
    assert first.wait_exit(30) == 0
    assert time.time() - started < 15
    second = make_server(data_dir=first.data_dir).start()
    assert "fst_" not in second.read_output(), "no setup token once an owner exists"
    s = second.login()
    assert s.get(second.url + f"/api/v1/projects/{project['id']}").json()["description"] == "MARKER-kept"


def test_wrong_or_missing_key_material_refuses_to_start(make_server, backend, tmp_path):
    first = make_server().start()
    first.setup_owner()
    first.stop()
    keyring = os.path.join(first.data_dir, "keyring.json")
    original = open(keyring).read()

    os.rename(keyring, keyring + ".away")
    missing = make_server(data_dir=first.data_dir).start(expect_ready=False)
    assert missing.wait_exit(60) != 0
    assert "key material is missing" in missing.read_output()

    other = make_server(data_dir=str(tmp_path / "other"), database=None).start()
    other.stop()
    with open(keyring, "w") as f:
        f.write(open(os.path.join(other.data_dir, "keyring.json")).read())
    os.chmod(keyring, 0o600)
    wrong = make_server(data_dir=first.data_dir).start(expect_ready=False)
    assert wrong.wait_exit(60) != 0
    assert "refusing to start" in wrong.read_output()
    assert "keyring" in wrong.read_output()

    with open(keyring, "w") as f:
        f.write(original)
    os.chmod(keyring, 0o644)
    loose = make_server(data_dir=first.data_dir).start(expect_ready=False)
    assert loose.wait_exit(60) != 0
    assert "readable by other users" in loose.read_output()

    os.chmod(keyring, 0o600)
    make_server(data_dir=first.data_dir).start().login()


def test_keyring_from_environment_file(make_server, backend, tmp_path):
    first = make_server().start()
    first.setup_owner()
    first.stop()
    moved = str(tmp_path / "keyring.json")
    os.rename(os.path.join(first.data_dir, "keyring.json"), moved)
    server = make_server(data_dir=first.data_dir, env={"FLOWSTACK_KEYRING_FILE": moved}).start()
    server.login()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sealed_values_are_not_in_the_database_files(server):
    owner = server.setup_owner()
    s = server.login()
    org = owner["organization"]["id"]
    marker = "MARKER-" + os.urandom(8).hex()
    assert s.post(server.url + f"/api/v1/orgs/{org}/projects", json={"name": "P", "description": marker}).status_code == 201
    assert s.post(server.url + f"/api/v1/orgs/{org}/invitations", json={"email": f"{marker}@example.com", "role": "member"}).status_code == 201
    data = b""
    for name in ["flowstack.sqlite", "flowstack.sqlite-wal"]:
        path = os.path.join(server.data_dir, name)
        if os.path.exists(path):
            data += open(path, "rb").read()
    assert b"owner@example.com" in data
    assert marker.encode() not in data


def test_cli_create_owner_disable_and_audit_verify(make_server, backend):
    server = make_server()
    created = server.cli("users", "create-owner", "--email", "cli@example.com", "--name", "Cli", "--organization", "Ops",
                         env={"FLOWSTACK_OWNER_PASSWORD": PASSWORD})
    assert created.returncode == 0, created.stderr
    weak = server.cli("users", "create-owner", "--email", "weak@example.com", "--name", "W", "--organization", "W",
                      env={"FLOWSTACK_OWNER_PASSWORD": "password"})
    assert weak.returncode != 0
    assert "password" in weak.stderr.lower()
    server.start()
    assert "fst_" not in server.read_output()
    server.login("cli@example.com")
    server.stop()
    verify = server.cli("audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "intact" in verify.stdout
    disabled = server.cli("users", "disable", "--email", "cli@example.com")
    assert disabled.returncode == 0
    # Tamper with one event, as someone with database access would.
    sql = "UPDATE audit_events SET outcome = 'failure' WHERE seq = (SELECT MIN(seq) FROM audit_events)"
    if backend == "sqlite":
        subprocess.run(["sqlite3", os.path.join(server.data_dir, "flowstack.sqlite"), sql], check=True)
    else:
        subprocess.run(["psql", server.database, "-qc", sql], check=True, capture_output=True)
    broken = server.cli("audit", "verify")
    assert broken.returncode == 1
    assert "altered" in broken.stdout


def test_configuration_from_environment_and_config_file(data_dir, tmp_path):
    from conftest import BIN, free_port
    import requests as rq
    port, http_port = free_port(), free_port()
    config = tmp_path / "flowstack.json"
    config.write_text(json.dumps({"flowstack": {"httpPort": http_port, "allowSignup": True}}))
    env = dict(os.environ, FLOWSTACK_DATA_DIR=data_dir, FLOWSTACK_PORT=str(port), FLOWSTACK_CONFIG=str(config))
    proc = subprocess.Popen([BIN, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ca = os.path.join(data_dir, "tls", "server.crt")
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if os.path.exists(ca) and rq.get(f"https://localhost:{port}/healthz", verify=ca, timeout=1).ok:
                    break
            except rq.RequestException:
                pass
            time.sleep(0.1)
        assert rq.get(f"http://127.0.0.1:{http_port}/", timeout=5).status_code == 403
        r = rq.post(f"https://localhost:{port}/api/v1/auth/signup", verify=ca,
                    json={"email": "z@example.com", "password": PASSWORD, "name": "Z", "organization": "Z"})
        assert r.status_code == 201, r.text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_cli_run_and_validate_a_workflow(tmp_path):
    from conftest import BIN
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    example = os.path.join(root, "examples", "greet.json")
    ran = subprocess.run([BIN, "run", example, "--input", "-"], input='{"body": {"name": "Ada"}}', capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)[0]["greeting"] == "Hello Ada"
    assert "status: succeeded" in ran.stderr
    # Bad input is refused with a clear error, by the same strict parser as webhook bodies.
    for text, says in [('{"a": 1,}', "not valid JSON"), ('[1, 2]', "array of objects")]:
        refused = subprocess.run([BIN, "run", example, "--input", "-"], input=text, capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and says in refused.stderr, (text, refused.returncode, refused.stderr)
    assert subprocess.run([BIN, "validate", example], capture_output=True, text=True).returncode == 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "X", "nodes": [{"name": "A", "type": "flowstack.set"}], "edges": [{"from": "A", "to": "B"}]}))
    checked = subprocess.run([BIN, "validate", str(bad)], capture_output=True, text=True)
    assert checked.returncode == 1
    for code in ["missing_parameter", "no_trigger", "dangling_edge"]:
        assert code in checked.stdout
    failing = tmp_path / "fail.json"
    failing.write_text(json.dumps({"name": "F", "nodes": [{"name": "S", "type": "flowstack.manualTrigger"},
                                                          {"name": "Boom", "type": "flowstack.stopAndError", "parameters": {"message": "no"}}],
                                   "edges": [{"from": "S", "to": "Boom"}]}))
    failed = subprocess.run([BIN, "run", str(failing)], capture_output=True, text=True)
    assert failed.returncode == 1
    assert "status: failed" in failed.stderr


def test_cli_survives_a_sandbox_that_stops_reading(tmp_path):
    """A sandbox child that closed its input fails the Code node; writing the request to it must
    not end `flowstack run` with SIGPIPE (which it did while nothing else had ignored SIGPIPE)."""
    from conftest import BIN
    binary = tmp_path / "flowstack"
    try:
        os.link(os.path.realpath(BIN), binary)
    except OSError:
        shutil.copy(os.path.realpath(BIN), binary)
    # The pool uses the flowstack-sandbox next to the binary: here one that is ready, then stops reading.
    fake = tmp_path / "flowstack-sandbox"
    fake.write_text("#!/bin/sh\necho '{\"ready\":true,\"protections\":{}}'\nexec 0<&-\n/bin/sleep 10\n")
    fake.chmod(0o755)
    workflow = tmp_path / "code.json"
    workflow.write_text(json.dumps({"name": "C", "nodes": [{"name": "S", "type": "flowstack.manualTrigger"},
                                                           {"name": "Code", "type": "flowstack.code", "parameters": {"code": "return []"}}],
                                    "edges": [{"from": "S", "to": "Code"}]}))
    ran = subprocess.run([str(binary), "run", str(workflow)], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 1, (ran.returncode, ran.stderr)
    assert "status: failed" in ran.stderr
    assert "sandbox stopped unexpectedly" in ran.stderr
