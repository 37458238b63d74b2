"""Fault tests of the real binary: PostgreSQL restarts under load, a replica stopped (SIGSTOP)
inside a transaction, kill -9 of a replica under load, a commit whose outcome the server never
hears, and Idempotency-Key.

Every test runs on its own database of a PostgreSQL cluster of its own (`faults.PgCluster`,
never the suite's shared one), with short leases (FLOWSTACK_LEASE_SECONDS=3), traffic on
loopback only, and bounded load. Each test collects every problem it sees, prints the numbers,
and fails at the end with the list.
"""
import os
import re
import secrets
import signal
import threading
import time

import pytest
import requests

from faults import (FINISHED, UNFINISHED, Deployment, LoadDriver, PgCluster, Recorder, TcpProxy, execution_statuses,
                    log, manual_workflow, pg_activity, pipeline_workflow, print_report, rows, session_for, set_workflow,
                    verify_webhook_outcomes, wait_until_finished)

LEASE = 3
ENV = {"FLOWSTACK_LEASE_SECONDS": str(LEASE)}
TIMEOUTS = {"FLOWSTACK_DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS": "2", "FLOWSTACK_DB_LOCK_TIMEOUT_SECONDS": "2",
            "FLOWSTACK_DB_STATEMENT_TIMEOUT_SECONDS": "5"}
ALLOW = ["--http-allow", "127.0.0.1"]
# How long an answer may take when the database connection broke under it: well inside the 20 s
# call deadline, which is only the backstop.
ANSWER_WITHIN = 8


@pytest.fixture(scope="module")
def pg():
    cluster = PgCluster().start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def recorder():
    remote = Recorder()
    try:
        yield remote
    finally:
        remote.close()


def unique(name):
    return f"{name}-{secrets.token_hex(4)}"


def server_complaints(deployment, lines=15):
    """The warnings and errors in the replicas' logs (the last few of each)."""
    out = []
    for index in range(len(deployment.servers)):
        text = deployment.logs(index, lines=lines, grep=("warning", "error", "critical", "WARN", "ERROR", "lost"))
        if text:
            out.append(f"--- replica-{index}:\n{text}")
    return "\n".join(out)


def unfinished_details(db, workflow_id, limit=10):
    return rows(db, f"""
        SELECT id, status, fence, coalesce(lease_owner, '-'), coalesce(lease_expires::text, '-'), events FROM executions
        WHERE workflow_id = '{workflow_id}' AND status IN ('queued', 'running', 'waiting') ORDER BY created_at LIMIT {limit}""")


def test_postgres_restart_fast_and_immediate_under_load_loses_nothing(pg, recorder):
    db = pg.create_database()
    deployment = Deployment(db, replicas=2, env=ENV, extra_args=ALLOW)
    problems = []
    try:
        deployment.start()
        path = unique("restart")
        workflow = deployment.create_workflow(pipeline_workflow(path, recorder.url))
        recorder.pids = deployment.pids()
        targets = [(server.url + "/webhook/" + path, server.ca) for server in deployment.servers]
        load = LoadDriver(targets, threads=8, rate=40, duration=20).start()
        time.sleep(6)
        log(f"restart -m fast after {len(load.snapshot())} requests")
        fast = pg.restart("fast")
        time.sleep(6)
        log(f"restart -m immediate after {len(load.snapshot())} requests")
        immediate = pg.restart("immediate")
        results = load.join()
        ended = time.time()
        counts = wait_until_finished(db, workflow, ended + LEASE + 20)
        drained = time.time() - ended
        if any(counts.get(status) for status in UNFINISHED):
            problems.append(f"{LEASE + 20} s after the load: {counts}; e.g. {unfinished_details(db, workflow)}")
        report = verify_webhook_outcomes(deployment, db, workflow, results, recorder=recorder)
        problems += report["problems"]
        ready = [deployment.ready(index) for index in range(2)]
        if ready != [200, 200]:
            problems.append(f"/readyz at the end: {ready}")
        log(f"restart fast took {fast:.2f} s, immediate {immediate:.2f} s; drained {drained:.1f} s after the load")
        log(f"load: {load.summary()}")
        print_report("PostgreSQL restarts under load", report)
        if problems:
            log(server_complaints(deployment))
    finally:
        deployment.destroy()
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:40])


def test_sigstop_of_a_replica_inside_a_transaction_does_not_block_takeover(pg, recorder):
    """Replica 1 reaches PostgreSQL through a proxy. The proxy holds back the answer to one of its
    journal reads (so that replica has an execution claimed whose HTTP Request has not been sent
    yet), then, at its next journal insert inside a transaction (after the fenced UPDATE, so the
    row is locked), SIGSTOPs it with the transaction open. Replica 0 takes the webhooks and must
    finish every execution while replica 1 stays stopped; after SIGCONT, replica 1 must not send
    the HTTP request of an execution that was taken over and finished meanwhile."""
    db = pg.create_database()
    proxy = TcpProxy(pg.port)
    env = dict(ENV, **TIMEOUTS)
    deployment = Deployment(databases=[db, proxy.url_for(db)], env=env, extra_args=ALLOW)
    problems = []
    stopped = {}
    try:
        deployment.start()
        path = unique("sigstop")
        workflow = deployment.create_workflow(pipeline_workflow(path, recorder.url))
        recorder.pids = deployment.pids()
        victim = deployment.servers[1].proc.pid

        def execution_in(link):
            match = re.search(rb"exe_[0-9a-z]{26}", link.last_window)
            return match.group().decode() if match else None

        def stop_victim(link):
            os.kill(victim, signal.SIGSTOP)
            stopped["at"] = time.time()
            stopped["locked"] = execution_in(link)
            stopped["link"] = link
            stopped["tx"] = link.tx_status
            stopped["server_port"] = link.server.getsockname()[1]
            for held in stopped.get("held", []):
                held.release()
            return "relay"

        def hold_journal_read(link):
            stopped.setdefault("held", []).append(link)
            stopped["held_at"] = time.time()
            stopped["held_execution"] = execution_in(link)
            proxy.hook(b"INSERT INTO execution_events", stop_victim, after=b"UPDATE executions SET events")
            return "hold"

        proxy.hook(b"created_at FROM execution_events", hold_journal_read)
        load = LoadDriver([(deployment.url(0) + "/webhook/" + path, deployment.servers[0].ca)], threads=4, rate=20, duration=14).start()
        deadline = time.time() + 10
        while "at" not in stopped and time.time() < deadline:
            time.sleep(0.05)
        if "at" not in stopped:
            proxy.disarm()
            for held in stopped.get("held", []):
                held.release()
            load.stop()
            load.join()
            pytest.fail(f"replica 1 was never caught inside a journal transaction (proxy events {proxy.events}, "
                        f"{len(recorder.snapshot())} HTTP calls)\n{server_complaints(deployment)}")
        log(f"SIGSTOP replica 1 (pid {victim}) inside a transaction (status {stopped['tx']}, its row: {stopped['locked']}) after "
            f"{len(load.snapshot())} requests; its journal read of {stopped.get('held_execution')} held back since "
            f"{stopped['at'] - stopped['held_at']:.2f} s before")
        in_flight = {id: status for id, status in execution_statuses(db, workflow).items() if status in UNFINISHED}
        log(f"unfinished when stopped: {len(in_flight)}")
        # The stopped replica's open transactions, over time (PostgreSQL should end them).
        timeline = []
        watching = threading.Event()

        def watch_sessions():
            victim_ports = {str(stopped["server_port"])} | {str(link.server.getsockname()[1]) for link in proxy.links()}
            while not watching.wait(0.5):
                try:
                    open_tx = [(a[0], a[3]) for a in pg_activity(pg.url, db) if a[1] in victim_ports and a[2].startswith("idle in transaction")]
                except Exception as error:
                    open_tx = [str(error)[:80]]
                timeline.append((time.time() - stopped["at"], open_tx))

        watcher = threading.Thread(target=watch_sessions, daemon=True)
        watcher.start()
        results = load.join()
        ended = time.time()
        limit = max(ended, stopped["at"]) + LEASE + 10
        counts = wait_until_finished(db, workflow, limit)
        watching.set()
        watcher.join(5)
        log(f"{time.time() - stopped['at']:.1f} s after SIGSTOP ({time.time() - ended:.1f} s after the load): {counts}")
        with_tx = [t for t, open_tx in timeline if open_tx]
        log(f"replica 1's transactions idle in transaction: {timeline[0][1] if timeline else '?'} at +{timeline[0][0] if timeline else 0:.1f} s; "
            f"last seen at +{max(with_tx) if with_tx else 0:.1f} s after SIGSTOP")
        # With idle_in_transaction_session_timeout = 2 s the locked row is free after ~2 s and its lease
        # ends after 3 s: another replica should have finished it well within 2 + 3 + 4 s.
        bound = 2 + LEASE + 4
        for name in ("locked", "held_execution"):
            if stopped.get(name):
                found = rows(db, f"SELECT status, coalesce(finished_at::text, '') FROM executions WHERE id = '{stopped[name]}'")
                if found and found[0][1]:
                    after = int(found[0][1]) / 1000 - stopped["at"]
                    log(f"{name} {stopped[name]}: {found[0][0]} {after:+.2f} s after SIGSTOP")
                    if name == "locked" and after > bound:
                        problems.append(f"the execution whose row the stopped transaction locked ({stopped[name]}) finished only {after:.1f} s "
                                        f"after SIGSTOP (expected within {bound} s with FLOWSTACK_DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS=2); "
                                        f"replica 1's transaction was still open at +{max(with_tx) if with_tx else 0:.1f} s")
                else:
                    log(f"{name} {stopped[name]}: {found}")
        if any(counts.get(status) for status in UNFINISHED):
            activity = pg_activity(pg.url, db)
            victim_ports = {str(link.server.getsockname()[1]) for link in proxy.links()} | {str(stopped["server_port"])}
            sessions = [a for a in activity if a[1] in victim_ports and a[2] != "idle"]
            problems.append(f"with replica 1 stopped, {LEASE + 10} s after the load: {counts}; e.g. {unfinished_details(db, workflow)}; "
                            f"replica 1's sessions not idle: {sessions}")
        statuses = execution_statuses(db, workflow)
        finished = {id for id, status in statuses.items() if status in FINISHED}
        os.kill(victim, signal.SIGCONT)
        resumed = time.time()
        log("SIGCONT replica 1")
        time.sleep(LEASE + 2)
        late = [entry for entry in recorder.snapshot() if entry["t"] >= resumed and entry["query"].get("exe") in finished]
        for entry in late[:20]:
            problems.append(f"after SIGCONT, {entry['owner']} requested {entry['path']}?{entry['query']} at +{entry['t'] - resumed:.2f} s "
                            f"for an execution already {statuses[entry['query']['exe']]}")
        if len(late) > 20:
            problems.append(f"... {len(late) - 20} more late HTTP requests")
        counts = wait_until_finished(db, workflow, time.time() + LEASE + 5)
        report = verify_webhook_outcomes(deployment, db, workflow, results, recorder=recorder)
        problems += report["problems"]
        ready = [deployment.ready(index) for index in range(2)]
        if ready != [200, 200]:
            problems.append(f"/readyz after SIGCONT: {ready}")
        log(f"load: {load.summary()}")
        log(f"HTTP requests after SIGCONT: {sum(1 for e in recorder.snapshot() if e['t'] >= resumed)} "
            f"(for executions finished before it: {len(late)}); by sender: "
            f"{ {o: sum(1 for e in recorder.snapshot() if e['owner'] == o) for o in ('replica-0', 'replica-1', '?')} }")
        print_report("SIGSTOP of a replica inside a transaction", report)
        log("replica 1 after SIGCONT:\n" + deployment.logs(1, lines=12, grep=("lease", "warning", "error")))
        if problems:
            log(server_complaints(deployment))
    finally:
        proxy.disarm()
        for held in stopped.get("held", []):
            held.release()
        deployment.destroy()
        proxy.close()
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:40])


def test_kill_9_of_a_replica_under_load(pg, recorder):
    db = pg.create_database()
    deployment = Deployment(db, replicas=2, env=ENV, extra_args=ALLOW)
    problems = []
    try:
        deployment.start()
        path = unique("kill")
        workflow = deployment.create_workflow(pipeline_workflow(path, recorder.url))
        recorder.pids = deployment.pids()
        targets = [(server.url + "/webhook/" + path, server.ca) for server in deployment.servers]
        load = LoadDriver(targets, threads=6, rate=30, duration=12).start()
        time.sleep(6)
        killed_at = time.time()
        deployment.servers[1].proc.send_signal(signal.SIGKILL)
        deployment.servers[1].proc.wait()
        in_flight = sum(1 for status in execution_statuses(db, workflow).values() if status in UNFINISHED)
        log(f"kill -9 replica 1 after {len(load.snapshot())} requests; {in_flight} unfinished")
        results = load.join()
        ended = time.time()
        counts = wait_until_finished(db, workflow, ended + LEASE + 10)
        log(f"{time.time() - killed_at:.1f} s after the kill: {counts}")
        if any(counts.get(status) for status in UNFINISHED):
            problems.append(f"{LEASE + 10} s after the load: {counts}; e.g. {unfinished_details(db, workflow)}")
        report = verify_webhook_outcomes(deployment, db, workflow, results, recorder=recorder)
        problems += report["problems"]
        if deployment.ready(0) != 200:
            problems.append(f"/readyz of the survivor: {deployment.ready(0)}")
        log(f"load: {load.summary()}")
        print_report("kill -9 of a replica under load", report)
        if problems:
            log(server_complaints(deployment))
    finally:
        deployment.destroy()
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:40])


def test_unknown_commit_outcome_is_answered_truthfully(pg, recorder):
    """The server's connection is cut right after PostgreSQL ran a statement, before the server
    hears the answer. Its reply must be 200 with the execution that exists, or a 5xx when none
    does; never a 5xx for an execution that exists and runs."""
    db = pg.create_database()
    proxy = TcpProxy(pg.port)
    deployment = Deployment(databases=[proxy.url_for(db)], env=ENV, extra_args=ALLOW)
    problems = []
    observed = []
    try:
        deployment.start()
        immediate_path, last_path = unique("unknown"), unique("unknown-last")
        immediate = deployment.create_workflow(pipeline_workflow(immediate_path, recorder.url))
        last = deployment.create_workflow(set_workflow(last_path, respond="lastNode"))
        session = session_for(deployment.servers[0].ca)
        cases = [
            ("INSERT INTO executions (respond immediately: inside the accepting transaction)", immediate, immediate_path, b"INSERT INTO executions", None),
            ("COMMIT of the accepting transaction (respond immediately)", immediate, immediate_path, b"COMMIT", b"INSERT INTO executions"),
            ("INSERT INTO executions (respond lastNode: the merged insert, its own commit)", last, last_path, b"INSERT INTO executions", None),
        ]
        for title, workflow, path, pattern, after in cases:
            before = set(execution_statuses(db, workflow))
            events = len(proxy.events)
            proxy.cut_after(pattern, after=after)
            rid = secrets.token_hex(4)
            began = time.time()
            try:
                r = session.post(deployment.url(0) + "/webhook/" + path, json={"id": rid}, timeout=30)
                status, body = r.status_code, r.text[:300]
            except requests.RequestException as error:
                status, body = type(error).__name__, ""
            took = time.time() - began
            fired = proxy.events[events:]
            proxy.disarm()
            wait_until_finished(db, workflow, time.time() + LEASE + 8)
            new = {id: s for id, s in execution_statuses(db, workflow).items() if id not in before}
            answered_id = None
            if isinstance(status, int) and status == 200:
                try:
                    answered_id = r.json().get("executionId")
                except ValueError:
                    pass
            line = f"{title}: cut fired={bool(fired)} answer={status} in {took:.2f} s {body!r}; new executions {new}"
            observed.append(line)
            log(line)
            if took > ANSWER_WITHIN:
                # The call deadline (20 s) is the backstop; a connection that closed must fail its
                # call at once (PostgresNIO never answers a statement written to a closed channel).
                problems.append(f"{title}: answered only after {took:.1f} s")
            if not fired:
                problems.append(f"{title}: the proxy never saw the statement (inconclusive)")
            elif status == 200:
                if len(new) != 1:
                    problems.append(f"{title}: 200 but {len(new)} new executions: {new}")
                elif answered_id is not None and answered_id not in new:
                    problems.append(f"{title}: 200 with executionId {answered_id}, but the execution that exists is {new}")
                elif list(new.values()) != ["succeeded"]:
                    problems.append(f"{title}: 200 and the execution is {new}")
            elif isinstance(status, int) and status >= 500:
                if new:
                    problems.append(f"{title}: answered {status} {body!r} but the execution exists: {new}")
            else:
                problems.append(f"{title}: answered {status} {body!r}")
            # The server is fine again afterwards.
            r = session.post(deployment.url(0) + "/webhook/" + path, json={"id": rid + "-again"}, timeout=30)
            if r.status_code != 200:
                problems.append(f"{title}: the next request got {r.status_code} {r.text[:200]}")
        # Every pooled connection dropped while idle (a PostgreSQL failover, a proxy restart): the
        # next request is answered truthfully, and the one after it works.
        dropped = proxy.drop_all()
        before = set(execution_statuses(db, immediate))
        answers = []
        for attempt in range(2):
            began = time.time()
            try:
                r = session.post(deployment.url(0) + "/webhook/" + immediate_path, json={"id": f"dropped-{attempt}"}, timeout=30)
                answers.append((r.status_code, time.time() - began, r.text[:200]))
            except requests.RequestException as error:
                answers.append((type(error).__name__, time.time() - began, ""))
        wait_until_finished(db, immediate, time.time() + LEASE + 8)
        new = execution_statuses(db, immediate)
        new = {id: s for id, s in new.items() if id not in before}
        line = f"after dropping {dropped} idle connections: answers {[(a[0], round(a[1], 2)) for a in answers]}; new executions {new}"
        observed.append(line)
        log(line)
        if sum(1 for a in answers if a[0] == 200) != len(new):
            problems.append(f"{line}: {sum(1 for a in answers if a[0] == 200)} answered 200 but {len(new)} executions exist")
        if any(a[1] > ANSWER_WITHIN for a in answers):
            problems.append(f"{line}: an answer took longer than {ANSWER_WITHIN} s")
        if answers[-1][0] != 200:
            problems.append(f"{line}: the second request after the drop got {answers[-1]}")
        if any(status != "succeeded" for status in new.values()):
            problems.append(f"{line}: not every execution succeeded")
        if problems:
            log(server_complaints(deployment))
    finally:
        deployment.destroy()
        proxy.close()
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_idempotency_key_returns_the_original_execution(pg, backend):
    db = pg.create_database() if backend == "postgres" else None
    deployment = Deployment(db, replicas=1, env=ENV)
    problems = []
    try:
        deployment.start()
        api = deployment.api()
        hook_a, hook_b = unique("idem-a"), unique("idem-b")
        webhook_a = deployment.create_workflow(set_workflow(hook_a, name="A"))
        webhook_b = deployment.create_workflow(set_workflow(hook_b, name="B"))
        manual_a = deployment.create_workflow(manual_workflow("MA"), activate=False)
        manual_b = deployment.create_workflow(manual_workflow("MB"), activate=False)
        anonymous = session_for(deployment.servers[0].ca)

        def webhook(path, key):
            return anonymous.post(deployment.url(0) + "/webhook/" + path, json={"id": key}, headers={"Idempotency-Key": key}, timeout=30)

        def run(workflow, key):
            return api.post(deployment.url(0) + f"/api/v1/workflows/{workflow}/run", json={"items": [{"n": 1}]},
                            headers={"Idempotency-Key": key}, timeout=30)

        def execution_id(r):
            try:
                body = r.json()
            except ValueError:
                return None
            return body.get("executionId") or body.get("id")

        def executions_of(workflow):
            return [e["id"] for e in deployment.executions(workflow_id=workflow)]

        for kind, send, first, other, expected in [("webhook", webhook, hook_a, hook_b, 200), ("run", run, manual_a, manual_b, 202)]:
            workflow_first = webhook_a if kind == "webhook" else manual_a
            workflow_other = webhook_b if kind == "webhook" else manual_b
            key = "k-" + secrets.token_hex(8)
            one, two = send(first, key), send(first, key)
            log(f"{kind} twice with {key}: {one.status_code} {execution_id(one)} replayed={one.headers.get('Idempotent-Replayed')}; "
                f"{two.status_code} {execution_id(two)} replayed={two.headers.get('Idempotent-Replayed')}")
            if one.status_code != expected:
                problems.append(f"{kind}: first answer {one.status_code} {one.text[:200]}")
            if one.headers.get("Idempotent-Replayed"):
                problems.append(f"{kind}: the first answer says Idempotent-Replayed: {one.headers.get('Idempotent-Replayed')}")
            if two.status_code != expected or execution_id(two) != execution_id(one):
                problems.append(f"{kind}: the repeat answered {two.status_code} {execution_id(two)} instead of {execution_id(one)}")
            if two.headers.get("Idempotent-Replayed") != "true":
                problems.append(f"{kind}: the repeat has Idempotent-Replayed: {two.headers.get('Idempotent-Replayed')}")
            time.sleep(0.3)
            found = executions_of(workflow_first)
            if len(found) != 1:
                problems.append(f"{kind}: {len(found)} executions after two requests with one key: {found}")
            fresh = send(first, "k-" + secrets.token_hex(8))
            if fresh.status_code != expected or execution_id(fresh) in (None, execution_id(one)):
                problems.append(f"{kind}: a new key answered {fresh.status_code} {execution_id(fresh)}")
            elsewhere = send(other, key)
            if elsewhere.status_code != expected or execution_id(elsewhere) in (None, execution_id(one)):
                problems.append(f"{kind}: the same key on another workflow answered {elsewhere.status_code} {execution_id(elsewhere)}")
            if elsewhere.headers.get("Idempotent-Replayed"):
                problems.append(f"{kind}: the same key on another workflow says Idempotent-Replayed: {elsewhere.headers.get('Idempotent-Replayed')}")
            time.sleep(0.3)
            if len(executions_of(workflow_first)) != 2 or len(executions_of(workflow_other)) != 1:
                problems.append(f"{kind}: executions after a new key and another workflow: {len(executions_of(workflow_first))} and "
                                f"{len(executions_of(workflow_other))} (expected 2 and 1)")
            # The same key sent twice at once: one execution; the other answer is the same one or 409 idempotency_key_in_use.
            key = "k-" + secrets.token_hex(8)
            before = set(executions_of(workflow_first))
            answers = [None, None]
            barrier = threading.Barrier(2)

            def concurrent(index):
                barrier.wait()
                answers[index] = send(first, key)

            threads = [threading.Thread(target=concurrent, args=(i,)) for i in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(40)
            time.sleep(0.3)
            created = set(executions_of(workflow_first)) - before
            summary = [(a.status_code, execution_id(a), a.headers.get("Idempotent-Replayed")) if a is not None else None for a in answers]
            log(f"{kind} twice at once with {key}: {summary}; created {len(created)}")
            if len(created) != 1:
                problems.append(f"{kind}: the same key twice at once created {len(created)} executions ({summary})")
            for a in answers:
                if a is None:
                    problems.append(f"{kind}: a concurrent request did not finish")
                elif a.status_code == 409:
                    if (a.json().get("error") or {}).get("code") != "idempotency_key_in_use":
                        problems.append(f"{kind}: concurrent 409 {a.text[:200]}")
                elif a.status_code != expected or execution_id(a) not in created:
                    problems.append(f"{kind}: concurrent answer {a.status_code} {execution_id(a)} (created {created})")
    finally:
        deployment.destroy()
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


def test_readyz_reports_a_dead_database_and_recovers(pg):
    """/readyz answers 503 while PostgreSQL is down and 200 once it is back, logging each change
    once; the pool runs before the first lease (no "run() hasn't been called yet" warning)."""
    db = pg.create_database()
    deployment = Deployment(db, replicas=1, env=ENV)
    problems = []
    try:
        deployment.start()
        if deployment.ready(0) != 200:
            problems.append(f"/readyz before the outage: {deployment.ready(0)}")
        pg.stop("immediate")
        down = None
        deadline = time.time() + 10
        while time.time() < deadline:
            status = deployment.ready(0, timeout=8)
            if status == 503:
                down = time.time()
                break
            time.sleep(0.2)
        if down is None:
            problems.append("/readyz never answered 503 while PostgreSQL was down")
        pg.start()
        up = None
        deadline = time.time() + 30
        while time.time() < deadline:
            if deployment.ready(0) == 200:
                up = time.time()
                break
            time.sleep(0.5)
        if up is None:
            problems.append("/readyz did not answer 200 again within 30 s of PostgreSQL's return")
        output = deployment.servers[0].read_output()
        if "hasn't been called yet" in output:
            problems.append("the PostgreSQL client was used before it ran")
        if output.count("not ready") != 1:
            problems.append(f"'not ready' logged {output.count('not ready')} times, expected once:\n{deployment.logs(0, grep=('ready',))}")
        if "ready again" not in output:
            problems.append("the recovery was not logged")
    finally:
        if not os.path.exists(os.path.join(pg.data, "postmaster.pid")):
            pg.start()
        deployment.destroy()
    assert not problems, "\n".join(problems)
