"""Key rotation, retirement and backups with the real binary: a server keeps running executions
while `flowstack keys rotate` re-encrypts under it (issue 4; SECURITY-TESTS 13, 17, 18)."""
import json
import os
import shutil
import threading
import time
import uuid

from conftest import Server, new_postgres_database


def prepare(server, marker):
    server.setup_owner()
    s = server.login()
    org = s.get(server.url + "/api/v1/me").json()["organizations"][0]["id"]
    project = s.post(server.url + f"/api/v1/orgs/{org}/projects", json={"name": "P"}).json()["id"]
    r = s.post(server.url + f"/api/v1/projects/{project}/connections", json={"name": "crm", "type": "bearer", "data": {"token": marker}})
    assert r.status_code == 201, r.text
    r = s.post(server.url + f"/api/v1/projects/{project}/variables", json={"name": "TOKEN", "value": marker})
    assert r.status_code == 201, r.text
    workflow = {
        "name": "Marker",
        "nodes": [{"name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": {}},
                  {"name": "Set", "type": "flowstack.set", "typeVersion": 1, "parameters": {"fields": {"secret": marker, "env": "{{ $env.TOKEN }}"}}}],
        "edges": [{"from": "Manual", "to": "Set"}],
    }
    r = s.post(server.url + f"/api/v1/projects/{project}/workflows", json=workflow)
    assert r.status_code == 201, r.text
    return s, project, r.json()["id"]


def wait_succeeded(server, s, ids):
    for execution in ids:
        for _ in range(600):
            status = s.get(server.url + f"/api/v1/executions/{execution}").json()["status"]
            if status in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.05)
        assert status == "succeeded", execution


def status(server):
    r = server.cli("keys", "status", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["keys"]


def database_bytes(server):
    if server.database:
        import subprocess
        return subprocess.run(["pg_dump", "--data-only", server.database], capture_output=True, check=True).stdout
    data = b""
    for suffix in ("", "-wal"):
        path = os.path.join(server.data_dir, "flowstack.sqlite" + suffix)
        if os.path.exists(path):
            with open(path, "rb") as f:
                data += f.read()
    return data


def test_rotate_while_executions_run_then_retire(make_server):
    marker = "E2E-ROTATE-" + uuid.uuid4().hex
    server = make_server().start()
    s, project, workflow = prepare(server, marker)
    ids = []
    errors = []
    stop = threading.Event()

    def submit():
        # Runs are submitted, and read back, the whole time the key rotates.
        while not stop.is_set():
            r = s.post(server.url + f"/api/v1/workflows/{workflow}/run")
            if r.status_code != 202:
                errors.append(r.text)
                continue
            ids.append(r.json()["id"])
            listed = s.get(server.url + f"/api/v1/projects/{project}/executions?limit=5")
            if listed.status_code != 200:
                errors.append(listed.text)
            time.sleep(0.01)

    submitter = threading.Thread(target=submit)
    submitter.start()
    time.sleep(0.5)
    old = {k["purpose"]: k["id"] for k in status(server) if k["active"]}
    rotated = server.cli("keys", "rotate", "--data")
    time.sleep(6)  # the server notices the new key within 5 s
    stop.set()
    submitter.join()
    assert errors == [], server.read_output()[-3000:]
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert "re-encryption of data done" in rotated.stdout
    assert "keyring reloaded" in server.read_output()
    assert len(ids) > 20
    wait_succeeded(server, s, ids)
    # Anything written with the old key before the server reloaded is moved by one more pass.
    again = server.cli("keys", "reencrypt", "--data")
    assert again.returncode == 0, again.stdout + again.stderr
    keys = status(server)
    assert [k for k in keys if k["id"] == old["data"]][0]["values"] == 0
    new_data = [k for k in keys if k["purpose"] == "data" and k["active"]][0]
    assert new_data["id"] != old["data"] and new_data["values"] > 0
    # The connections key is separate: untouched by the data rotation.
    assert [k for k in keys if k["purpose"] == "connections" and k["active"]][0]["id"] == old["connections"]

    retired = server.cli("keys", "retire")
    assert retired.returncode == 0, retired.stdout + retired.stderr
    assert f"retired {old['data']}" in retired.stdout
    with open(os.path.join(server.data_dir, "keyring.json")) as f:
        assert old["data"] not in f.read()
    # Rotating the connections key moves exactly the one secret.
    conn = server.cli("keys", "rotate", "--connections")
    assert conn.returncode == 0, conn.stdout + conn.stderr
    assert server.cli("keys", "retire").returncode == 0

    # After a restart with only the new keys, every execution, the connection and the variable still open.
    server.stop()
    server.start()
    s = server.login()
    for execution in ids[:5] + ids[-5:]:
        r = s.get(server.url + f"/api/v1/executions/{execution}")
        assert r.status_code == 200 and marker in r.text, r.text
    assert s.get(server.url + f"/api/v1/projects/{project}/variables").json()["items"][0]["value"] == marker
    connection = s.get(server.url + f"/api/v1/projects/{project}/connections").json()["items"][0]
    assert connection["secrets"]["token"]["last4"] == marker[-4:] and marker not in json.dumps(connection)
    r = s.post(server.url + f"/api/v1/workflows/{workflow}/run?wait=true")
    assert r.json()["status"] == "succeeded"
    assert marker.encode() not in database_bytes(server)
    # SECURITY-TESTS 30: the secret never reached the server's log; no key material is in the database.
    assert marker not in server.read_output()
    with open(os.path.join(server.data_dir, "keyring.json")) as f:
        for entry in (lambda k: k["data"] + k["connections"])(json.load(f)):
            assert entry["key"].encode() not in database_bytes(server)
    # The audit chain survived re-keying.
    audit = server.cli("audit", "verify")
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_backup_and_restore_with_right_and_wrong_keys(make_server, backend, tmp_path):
    marker = "E2E-BACKUP-" + uuid.uuid4().hex
    server = make_server().start()
    s, project, workflow = prepare(server, marker)
    assert s.post(server.url + f"/api/v1/workflows/{workflow}/run?wait=true").json()["status"] == "succeeded"
    backup = str(tmp_path / "backup")
    made = server.cli("backup", "--output", backup)
    assert made.returncode == 0, made.stdout + made.stderr
    files = sorted(os.listdir(backup))
    assert "manifest.json" in files and len(files) == 2
    with open(os.path.join(server.data_dir, "keyring.json")) as f:
        keyring = json.load(f)
    for name in files:
        with open(os.path.join(backup, name), "rb") as f:
            content = f.read()
        assert marker.encode() not in content, name
        for entry in keyring["data"] + keyring["connections"]:
            assert entry["key"].encode() not in content, name

    def target():
        directory = str(tmp_path / ("restore-" + uuid.uuid4().hex[:6]))
        return Server(directory, database=new_postgres_database() if backend == "postgres" else None)

    # The wrong keys: refused, nothing written.
    wrong = target()
    os.makedirs(wrong.data_dir, mode=0o700)
    other = Server(str(tmp_path / "other"))
    other.start()
    other.stop()
    shutil.copy(os.path.join(other.data_dir, "keyring.json"), os.path.join(wrong.data_dir, "keyring.json"))
    refused = wrong.cli("restore", "--from", backup)
    assert refused.returncode != 0
    assert "nothing was restored" in refused.stderr + refused.stdout
    assert not os.path.exists(os.path.join(wrong.data_dir, "flowstack.sqlite"))

    # The right keys: restored, and a server on it serves the data.
    right = target()
    os.makedirs(right.data_dir, mode=0o700)
    shutil.copy(os.path.join(server.data_dir, "keyring.json"), os.path.join(right.data_dir, "keyring.json"))
    os.chmod(os.path.join(right.data_dir, "keyring.json"), 0o600)
    restored = right.cli("restore", "--from", backup)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    right.start()
    try:
        s2 = right.login()
        assert s2.get(right.url + f"/api/v1/projects/{project}/variables").json()["items"][0]["value"] == marker
        r = s2.post(right.url + f"/api/v1/workflows/{workflow}/run?wait=true")
        assert r.json()["status"] == "succeeded" and marker in r.text
    finally:
        right.stop()
