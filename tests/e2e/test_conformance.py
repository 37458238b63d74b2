"""Third-party scanners against the running binary: sslyze (Mozilla "modern") and schemathesis."""
import os
import re
import subprocess

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sslyze_mozilla_modern_reports_only_the_self_signed_chain(server):
    sslyze = os.path.join(ROOT, ".venv-sslyze", "bin", "sslyze")
    result = subprocess.run([sslyze, "--mozilla_config=modern", f"127.0.0.1:{server.port}"], capture_output=True, text=True, timeout=300)
    out = result.stdout
    assert "SCANS COMPLETED" in out, out + result.stderr
    assert "COMPLIANCE AGAINST" in out, out
    section = out.split("COMPLIANCE AGAINST", 1)[1]
    problems = [line.strip() for line in section.splitlines() if line.strip().startswith("* ")]
    assert problems, "sslyze should at least flag the self-signed certificate:\n" + section
    for problem in problems:
        assert problem.startswith("* certificate_path_validation"), f"finding other than the self-signed chain: {problem}\n{section}"
    assert "TLS 1.3" in out or "TLS_1_3" in out


def test_schemathesis_finds_no_server_errors_or_schema_violations(server, backend):
    owner = server.setup_owner()
    org = owner["organization"]["id"]
    plan = server.cli("orgs", "set-plan", "--org", org, "--plan", "enterprise")
    assert plan.returncode == 0, plan.stderr
    s = server.login()
    key = s.post(server.url + f"/api/v1/orgs/{org}/api-keys", json={"name": "schemathesis", "scope": "write"}).json()["key"]
    schemathesis = os.path.join(ROOT, ".venv-test", "bin", "schemathesis")
    result = subprocess.run([schemathesis, "run", server.url + "/api/v1/openapi.json", "--tls-verify", server.ca,
                             "-H", f"Authorization: Bearer {key}", "--max-examples", os.environ.get("SCHEMATHESIS_EXAMPLES", "40"),
                             # positive_data_acceptance expects every schema-valid request to succeed; FlowStack
                             # rightly refuses some for reasons a schema cannot express (a locked account is 423,
                             # a weak or common password 422). Every schema and status check stays on.
                             "--exclude-checks", "positive_data_acceptance",
                             "--workers", "2", "--seed", os.environ.get("SCHEMATHESIS_SEED", "20261129"), "--no-color"],
                            capture_output=True, text=True, timeout=900)
    tail = result.stdout[-6000:]
    # On failure, the failures themselves first (the tail is mostly schemathesis's advice).
    start = result.stdout.find("FAILURES")
    detail = result.stdout[start:start + 8000] + "\n…\n" if start >= 0 else ""
    assert result.returncode == 0, detail + tail[-3000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", tail), tail
