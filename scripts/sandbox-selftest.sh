#!/usr/bin/env bash
# Builds flowstack-sandbox standalone with swiftc (not SwiftPM) into a temporary directory and runs
# the Code-node sandbox cases through the real binary: semantics, limits, hardening, latency.
# Prints PASS/FAIL per case and "N passed, N failed"; exits non-zero when any case failed.
#
#   scripts/sandbox-selftest.sh                     build, then test
#   SANDBOX_BIN=/path/to/flowstack-sandbox scripts/sandbox-selftest.sh   test an existing binary
#   SANDBOX_PERF_REQUESTS=200 scripts/sandbox-selftest.sh                fewer latency requests
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [ -z "${SANDBOX_BIN:-}" ]; then
  if ! pkg-config --exists javascriptcoregtk-4.1 2>/dev/null; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends libjavascriptcoregtk-4.1-dev pkg-config >/dev/null
  fi
  echo "building flowstack-sandbox into $work"
  # shellcheck disable=SC2046
  swiftc -O -swift-version 6 -enable-upcoming-feature ExistentialAny \
    -I Sources/CJavaScriptCore \
    $(pkg-config --cflags javascriptcoregtk-4.1 | sed 's/-I/-Xcc -I/g') \
    Sources/flowstack-sandbox/*.swift \
    $(pkg-config --libs javascriptcoregtk-4.1) \
    -o "$work/flowstack-sandbox"
  SANDBOX_BIN="$work/flowstack-sandbox"
fi

mkdir -p "$work/cwd"
SANDBOX_BIN="$SANDBOX_BIN" SANDBOX_CWD="$work/cwd" SANDBOX_STDERR="$work/stderr.log" python3 - <<'PY'
import json, os, select, statistics, subprocess, sys, time

BIN = os.environ["SANDBOX_BIN"]
CWD = os.environ["SANDBOX_CWD"]
STDERR = open(os.environ["SANDBOX_STDERR"], "ab")
PERF_REQUESTS = int(os.environ.get("SANDBOX_PERF_REQUESTS", "1000"))
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS  {name}")
    else:
        failed += 1
        print(f"FAIL  {name}  {detail}"[:2000])
    sys.stdout.flush()


class Child:
    """One sandbox process, spawned the way the parent does: empty environment but
    SWIFT_BACKTRACE, an empty temporary directory as the working directory."""

    def __init__(self):
        self.p = subprocess.Popen([BIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=STDERR,
                                  cwd=CWD, env={"SWIFT_BACKTRACE": "enable=no"})
        self.buffer = b""
        line = self.readline(30)
        self.ready = json.loads(line) if line else None

    def readline(self, timeout):
        deadline = time.monotonic() + timeout
        fd = self.p.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def send_raw(self, text, timeout=30):
        try:
            self.p.stdin.write(text.encode() + b"\n")
            self.p.stdin.flush()
        except BrokenPipeError:
            return None
        line = self.readline(timeout)
        return json.loads(line) if line else None

    def run(self, code, mode="all", items=None, timeout=30, **fields):
        request = {
            "code": code, "mode": mode,
            "items": [{"json": {"n": 1}}, {"json": {"n": 2}}] if items is None else items,
            "env": {"GREETING": "hello", "API_URL": "https://example.test"},
            "timeLimitMs": 2000, "maxOutputBytes": 1 << 20, "maxLogBytes": 4096,
            "context": {"executionId": "exec-1", "workflowId": "wf-1", "workflowName": "Orders", "nodeName": "Code"},
        }
        request.update(fields)
        return self.send_raw(json.dumps(request), timeout)

    def alive(self):
        reply = self.run("return [{json: {alive: true}}]")
        return reply is not None and reply.get("ok") and reply["items"] == [{"json": {"alive": True}}]

    def close(self, timeout=10):
        try:
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return "hung"


def jsonof(reply):
    return [item["json"] for item in reply["items"]] if reply and reply.get("ok") else reply


def error(reply, kind, contains="", line=None):
    return (reply is not None and reply.get("ok") is False and reply.get("errorKind") == kind
            and contains in reply.get("error", "") and (line is None or reply.get("line") == line))


child = Child()
check("ready line reports every protection",
      child.ready == {"ready": True, "protections": {"network": "namespace", "seccomp": True,
                                                      "noNewPrivs": True, "fdsClosed": True}}, child.ready)

# --- semantics -------------------------------------------------------------------------------
r = child.run("return items.map(i => ({json: {...i.json, doubled: i.json.n * 2}}))")
check("mode all: map over items", jsonof(r) == [{"n": 1, "doubled": 2}, {"n": 2, "doubled": 4}], r)

r = child.run("return {json: {n: $json.n + 1, i: $itemIndex}}", mode="each")
check("mode each: $json and $itemIndex", jsonof(r) == [{"n": 2, "i": 0}, {"n": 3, "i": 1}], r)

r = child.run("return {a: item.json.n, b: $input.item.json.n, first: $input.first().json.n}", mode="each")
check("mode each: item, $input.item, $input.first()",
      jsonof(r) == [{"a": 1, "b": 1, "first": 1}, {"a": 2, "b": 2, "first": 1}], r)

r = child.run("await Promise.resolve(1); return [{json:{a:1}}]")
check("top-level await", jsonof(r) == [{"a": 1}], r)

r = child.run("return [{a: 1}, {json: {b: 2}}]")
check("plain objects are wrapped as {json}", jsonof(r) == [{"a": 1}, {"b": 2}], r)

r = child.run("return {single: true}")
check("a single object is one item", jsonof(r) == [{"single": True}], r)

r = child.run("return []")
check("an empty array is no items", r is not None and r.get("ok") and r["items"] == [], r)

r = child.run("return [{json: {a: 1}, binary: {data: {id: 'b1'}}}]")
check("binary is passed through", r is not None and r.get("ok") and r["items"] == [{"json": {"a": 1}, "binary": {"data": {"id": "b1"}}}], r)

r = child.run("return [{json: {f() {}, u: undefined, d: new Date(0), n: NaN}}]")
check("values JSON cannot hold are dropped like JSON.stringify",
      jsonof(r) == [{"d": "1970-01-01T00:00:00.000Z", "n": None}], r)

r = child.run("return [$input.first().json, $input.last().json, {count: $input.all().length, first: $json}]")
check("$input.all/first/last and $json in mode all",
      jsonof(r) == [{"n": 1}, {"n": 2}, {"count": 2, "first": {"n": 1}}], r)

r = child.run("return 42")
check("returning a number is an output error", error(r, "output", "must return an array of objects"), r)
r = child.run("const x = 1")
check("returning nothing is an output error", error(r, "output", "returned undefined"), r)
r = child.run("return [1, 2]")
check("an array of numbers is an output error", error(r, "output", "item 0 is a number"), r)
r = child.run("return undefined", mode="each")
check("mode each: returning nothing is an output error", error(r, "output", "must return an object for every item"), r)

r = child.run("console.log('hi', {a: 1}, [1, 2], 3, null, undefined); console.warn('careful'); console.error(new Error('bad')); return []")
check("console.* is captured",
      r is not None and r.get("ok") and r["logs"] == ['hi {"a":1} [1,2] 3 null undefined', "[warn] careful", "[error] Error: bad"], r)

r = child.run("for (let i = 0; i < 1000; i++) console.log('line ' + i); return []", maxLogBytes=100)
check("logs stop at maxLogBytes with one marker",
      r is not None and r.get("ok") and r["logs"][-1] == "[log truncated]" and sum(len(l.encode()) + 1 for l in r["logs"][:-1]) <= 100
      and r["logs"].count("[log truncated]") == 1, r)

r = child.run("'use strict'; let threw = false; try { $env.GREETING = 'x' } catch (e) { threw = true }"
              " return [{env: $env.GREETING, frozen: Object.isFrozen($env), threw, exec: $execution.id,"
              " wf: $workflow.id, name: $workflow.name, node: $node.name, keys: Object.keys($env).length}]")
check("$env, $execution, $workflow, $node (frozen)",
      jsonof(r) == [{"env": "hello", "frozen": True, "threw": True, "exec": "exec-1", "wf": "wf-1",
                     "name": "Orders", "node": "Code", "keys": 2}], r)

r = child.run("return [typeof require, typeof process, typeof fetch, typeof setTimeout, typeof WebAssembly].map(t => ({t}))")
check("no require, process, fetch, setTimeout, WebAssembly", jsonof(r) == [{"t": "undefined"}] * 5, r)

child.run("globalThis.leaked = 42; var topLevel = 1; Object.prototype.polluted = 'yes'; return []")
r = child.run("return [{leaked: typeof leaked, polluted: typeof ({}).polluted}]")
check("nothing survives between requests", jsonof(r) == [{"leaked": "undefined", "polluted": "undefined"}], r)

# --- errors ----------------------------------------------------------------------------------
r = child.run("const a = 1;\nconst b = 2;\nconst c = ;\nreturn []")
check("syntax error with the user's line number", error(r, "syntax", "SyntaxError", line=3), r)

r = child.run("const a = 1;\nconst o = null;\nreturn [{x: o.missing}]")
check("runtime TypeError with message and line", error(r, "runtime", "TypeError", line=3), r)

r = child.run("\n\nthrow new Error('custom failure')")
check("thrown Error: message and line", error(r, "runtime", "Error: custom failure", line=3), r)

r = child.run("function f() { return f() }\nreturn f()")
check("infinite recursion is a RangeError, not a crash", error(r, "runtime", "RangeError", line=1), r)

r = child.run("await new Promise(() => {})\nreturn []")
check("awaiting forever is reported", error(r, "runtime", "did not finish"), r)

r = child.send_raw("this is not json")
check("a malformed request is an internal error", error(r, "internal", "Invalid request"), r)
check("the child serves requests after errors", child.alive())

# --- code generation and escapes ---------------------------------------------------------------
for name, code in [
    ("eval", "return [{v: eval('1 + 1')}]"),
    ("Function()", "return [{v: Function('return 1')()}]"),
    ("new Function()", "return [{v: new Function('return 1')()}]"),
    ("function constructor", "return [{v: (function(){}).constructor('return 1')()}]"),
    ("async function constructor", "return [{v: await (async function(){}).constructor('return 1')()}]"),
    ("generator constructor", "return [{v: (function*(){}).constructor('yield 1')().next().value}]"),
    ("this.constructor.constructor", "return [{v: String(this.constructor.constructor('return process')())}]"),
]:
    r = child.run(code)
    check(f"{name} is blocked", error(r, "runtime", "EvalError"), r)

# --- time ------------------------------------------------------------------------------------
started = time.monotonic()
r = child.run("while (true) {}", timeLimitMs=200)
elapsed = (time.monotonic() - started) * 1000
check(f"while(true) stops at the time limit ({elapsed:.0f} ms for 200 ms)",
      error(r, "timeout", "time limit of 200 ms") and elapsed < 1500, r)
check("the child keeps serving after a timeout", child.alive())

r = child.run("await null;\nwhile (true) {}", timeLimitMs=200)
check("a loop after await stops too", error(r, "timeout"), r)
check("the child keeps serving after a timeout inside promise jobs", child.alive())

r = child.run("const t = Date.now(); while (Date.now() - t < 150) {} return {}", mode="each", timeLimitMs=300,
              items=[{"json": {}}] * 4)
check("mode each: the limit covers the whole request", error(r, "timeout"), r)

r = child.run("return [{json: {toJSON() { while (true) {} }}}]", timeLimitMs=200)
check("a loop inside toJSON during output stops", error(r, "timeout"), r)
check("the child keeps serving", child.alive())

# --- memory and output ------------------------------------------------------------------------
r = child.run("return [{json: {s: 'x'.repeat(2000)}}]", maxOutputBytes=1000)
check("output over maxOutputBytes", error(r, "output", "larger than the limit of 1000 bytes"), r)

r = child.run("let s = 'x'; while (true) s = s + s;", timeLimitMs=10000)
check("string growth is RangeError: Out of memory (errorKind memory)", error(r, "memory", "Out of memory"), r)
check("the child keeps serving after a JS out-of-memory error", child.alive())

r = child.run("let a = []; while (true) a.push(new Array(1e6).fill(1))", timeLimitMs=1500, timeout=60)
check("array growth without maxMemoryBytes: no exception, stopped by the time limit", error(r, "timeout"), r)
check("the child serves again after the big heap is collected", child.alive())

r = child.run("let a = []; while (true) a.push(new Array(1e6).fill(1))", timeLimitMs=20000, maxMemoryBytes=600 << 20, timeout=60)
check("array growth with maxMemoryBytes is a memory error", error(r, "memory", "more memory than allowed"), r)
if child.alive():
    check("after the memory error the child collected garbage and serves again", True)
else:
    code = child.close()
    check("after the memory error the child exits with status 3 (still over the cap)", code == 3, code)
    child = Child()

# --- latency -----------------------------------------------------------------------------------
items = [{"json": {"id": i, "name": f"user {i}", "price": i * 1.25, "tags": ["a", "b"]}} for i in range(100)]
code = "return items.map(i => ({json: {...i.json, total: i.json.price * 2, label: i.json.name.toUpperCase()}}))"
times = []
ok = True
for _ in range(PERF_REQUESTS):
    started = time.perf_counter()
    r = child.run(code, items=items)
    times.append(time.perf_counter() - started)
    ok = ok and r is not None and r.get("ok") and len(r["items"]) == 100 and r["items"][99]["json"]["total"] == 247.5
times.sort()
median = statistics.median(times) * 1000
print(f"INFO  {PERF_REQUESTS} requests x 100 items through one child: median {median:.2f} ms, "
      f"p90 {times[int(len(times) * 0.9)] * 1000:.2f} ms, max {times[-1] * 1000:.1f} ms")
check(f"{PERF_REQUESTS} requests of 100 items all correct", ok)

code = child.close()
check("end of input: exit status 0", code == 0, code)

# --- hardening --------------------------------------------------------------------------------
report = subprocess.run([BIN, "--self-test"], capture_output=True, cwd=CWD, env={"SWIFT_BACKTRACE": "enable=no"}, timeout=120)
try:
    self_test = json.loads(report.stdout)
except ValueError:
    self_test = {}
checks = self_test.get("checks", {})
for name in ["socketInet", "socketInet6", "socketUnix", "socketpair", "tcpConnect127.0.0.1:1", "fork", "posixSpawn",
             "execve", "ptrace", "mount", "unshare", "ioUringSetup", "x32Syscall", "clone3"]:
    check(f"--self-test: {name} blocked ({checks.get(name, {}).get('result')})", checks.get(name, {}).get("blocked") is True, checks.get(name))
check("--self-test: JavaScriptCore runs with its threads under the filter",
      self_test.get("jsc", {}).get("works") is True and self_test.get("threads", {}).get("count", 0) > 1, self_test.get("jsc"))
check("--self-test: only stdin, stdout, stderr open after hardening", self_test.get("openFdsAfterHardening") == 3, self_test.get("openFdsAfterHardening"))
check("--self-test passes (exit 0)", report.returncode == 0 and self_test.get("pass") is True, report.stdout[:500])

report = subprocess.run([BIN, "--self-test", "--no-seccomp"], capture_output=True, cwd=CWD, env={"SWIFT_BACKTRACE": "enable=no"}, timeout=120)
try:
    self_test = json.loads(report.stdout)
except ValueError:
    self_test = {}
connect = self_test.get("checks", {}).get("tcpConnect127.0.0.1:1", {})
check(f"without seccomp the network namespace alone stops TCP ({connect.get('result')})",
      connect.get("result") == "ENETUNREACH", connect)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
