// flowstack-sandbox: runs untrusted Code-node JavaScript on JavaScriptCore, one request at a time,
// speaking newline-delimited JSON on stdin/stdout. See docs/sandbox.md.
//
//   flowstack-sandbox                          serve requests (the parent's pool spawns this)
//   flowstack-sandbox --self-test              apply the hardening, try forbidden operations, print a report
//   flowstack-sandbox --self-test --no-seccomp the same without the seccomp filter (shows the other layers)

import Glibc

let arguments = Array(CommandLine.arguments.dropFirst())

if arguments.first == "--self-test" {
    let rest = arguments.dropFirst()
    guard rest.allSatisfy({ $0 == "--no-seccomp" }) else {
        Output.writeError("usage: flowstack-sandbox [--self-test [--no-seccomp]]\n")
        exit(2)
    }
    exit(SelfTest.run(seccomp: !rest.contains("--no-seccomp")))
}

guard arguments.isEmpty else {
    Output.writeError("usage: flowstack-sandbox [--self-test [--no-seccomp]]\n")
    exit(2)
}

exit(Server.run())
