"""End-to-end fixtures: the real `flowstack` binary over real TLS on loopback.

Every server gets a fresh data directory and free ports. Tests marked with the `backend`
fixture run twice: on the embedded SQLite and on the throwaway PostgreSQL cluster that
scripts/test.sh starts (FLOWSTACK_TEST_POSTGRES_URL).
"""
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.parse

import pytest
import requests

BIN = os.environ.get("FLOWSTACK_BIN", os.path.join(os.path.dirname(__file__), "../../.build/debug/flowstack"))
PASSWORD = "Corr3ct-Horse-Battery"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(url, sql):
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], check=True, capture_output=True, text=True)


def new_postgres_database():
    admin = os.environ.get("FLOWSTACK_TEST_POSTGRES_URL")
    if not admin:
        pytest.fail("FLOWSTACK_TEST_POSTGRES_URL is not set: run the suite with `make test`")
    name = "e2e_" + secrets.token_hex(6)
    psql(admin, f"CREATE DATABASE {name}")
    parts = urllib.parse.urlsplit(admin)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


# The suite is one client on loopback making far more calls than a person would: the request-rate
# and handshake limits are off for it (0), except where a test passes its own (test_edge.py).
UNLIMITED = {name: "0" for name in (
    "FLOWSTACK_RATE_API_PER_SECOND", "FLOWSTACK_RATE_API_BURST", "FLOWSTACK_RATE_KEY_PER_SECOND", "FLOWSTACK_RATE_KEY_BURST",
    "FLOWSTACK_RATE_ORG_PER_SECOND", "FLOWSTACK_RATE_ORG_BURST", "FLOWSTACK_RATE_WEBHOOK_PER_SECOND", "FLOWSTACK_RATE_WEBHOOK_BURST",
    "FLOWSTACK_RATE_WEBHOOK_ADDRESS_PER_SECOND", "FLOWSTACK_RATE_WEBHOOK_ADDRESS_BURST", "FLOWSTACK_HANDSHAKES_PER_SECOND",
    "FLOWSTACK_CONNECTIONS_PER_ADDRESS")}


class Server:
    """A running `flowstack serve` process."""

    def __init__(self, data_dir, database=None, extra_args=(), env=None, edge_defaults=False):
        self.data_dir = data_dir
        self.database = database
        self.port = free_port()
        self.http_port = free_port()
        self.extra_args = list(extra_args)
        # edge_defaults: the shipped limits, as an operator who sets nothing gets them.
        self.env = dict({} if edge_defaults else UNLIMITED, **(env or {}))
        self.proc = None
        self.output = ""

    @property
    def url(self):
        return f"https://localhost:{self.port}"

    @property
    def ca(self):
        return os.path.join(self.data_dir, "tls", "server.crt")

    def args(self):
        args = [BIN, "serve", "--data-dir", self.data_dir, "--port", str(self.port), "--http-port", str(self.http_port)]
        if self.database:
            args += ["--database", self.database]
        return args + self.extra_args

    def start(self, expect_ready=True):
        env = dict(os.environ, **self.env)
        self.log = tempfile.NamedTemporaryFile(mode="w+", prefix="flowstack-e2e-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(self.args(), stdout=self.log, stderr=subprocess.STDOUT, env=env)
        if not expect_ready:
            return self
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.read_output()}")
            try:
                if os.path.exists(self.ca) and requests.get(self.url + "/healthz", verify=self.ca, timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError("server did not become ready:\n" + self.read_output())

    def read_output(self):
        self.log.flush()
        with open(self.log.name) as f:
            self.output = f.read()
        return self.output

    def wait_exit(self, timeout=30):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def setup_token(self):
        match = re.search(r"(fst_[A-Za-z0-9_-]{43})", self.read_output())
        assert match, "the setup token was not printed:\n" + self.output
        return match.group(1)

    def session(self):
        s = requests.Session()
        # Without this, REQUESTS_CA_BUNDLE in the environment would override `verify`.
        s.trust_env = False
        s.verify = self.ca
        return s

    def setup_owner(self, email="owner@example.com"):
        s = self.session()
        r = s.post(self.url + "/api/v1/setup", json={"token": self.setup_token(), "email": email, "password": PASSWORD,
                                                     "name": "Owner", "organization": "Acme"})
        assert r.status_code == 201, r.text
        return r.json()

    def login(self, email="owner@example.com", password=PASSWORD):
        s = self.session()
        r = s.post(self.url + "/api/v1/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        s.headers["X-CSRF-Token"] = r.json()["csrfToken"]
        return s

    def cli(self, *args, env=None, input=None):
        command = [BIN, *args, "--data-dir", self.data_dir]
        if self.database:
            command += ["--database", self.database]
        return subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, **(env or {})), input=input, timeout=120)


@pytest.fixture
def data_dir():
    path = tempfile.mkdtemp(prefix="flowstack-e2e-")
    yield os.path.join(path, "data")
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request):
    return request.param


@pytest.fixture
def make_server(data_dir, backend):
    servers = []
    database = new_postgres_database() if backend == "postgres" else None

    def make(**kwargs):
        kwargs.setdefault("database", database)
        server = Server(kwargs.pop("data_dir", data_dir), **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server):
    return make_server().start()
