import CJavaScriptCore
import Glibc

/// `--self-test`: applies the same hardening as serving, then attempts what the sandbox forbids and
/// checks that JavaScriptCore (with its threads) still works. Prints one JSON line; exit 0 when every
/// expectation held.
enum SelfTest {
    struct Check {
        let name: String
        let result: Int32 // 0 = the operation succeeded, else errno
        let expectBlocked: Bool
        /// errno values that count as "blocked" for this check.
        let blockedBy: Set<Int32>

        var blocked: Bool { result != 0 && blockedBy.contains(result) }
        var passed: Bool { !expectBlocked || blocked }
    }

    static func run(seccomp: Bool) -> Int32 {
        let protections = Hardening.apply(seccomp: seccomp)
        let fdsAtStart = openFileDescriptors()
        let filter = protections.seccomp
        let eperm: Set<Int32> = [EPERM]
        var checks: [Check] = []
        func probe(_ name: String, _ expectBlocked: Bool, _ blockedBy: Set<Int32> = eperm, _ body: () -> Int32) {
            checks.append(Check(name: name, result: body(), expectBlocked: expectBlocked, blockedBy: blockedBy))
        }
        // Networking: the filter refuses sockets outright; without it the empty network namespace
        // leaves nothing to connect to (ENETUNREACH).
        probe("socketInet", filter) { fs_probe_socket(AF_INET, Int32(SOCK_STREAM.rawValue)) }
        probe("socketInet6", filter) { fs_probe_socket(AF_INET6, Int32(SOCK_DGRAM.rawValue)) }
        probe("socketUnix", filter) { fs_probe_socket(AF_UNIX, Int32(SOCK_STREAM.rawValue)) }
        probe("socketNetlink", filter) { fs_probe_socket(AF_NETLINK, Int32(SOCK_RAW.rawValue)) }
        probe("socketpair", filter) { fs_probe_socketpair() }
        probe("tcpConnect127.0.0.1:1", filter || protections.networkNamespace, [EPERM, ENETUNREACH]) { fs_probe_tcp_connect(1) }
        // Processes and programs.
        probe("fork", filter) { fs_probe_fork() }
        probe("posixSpawn", filter) { fs_probe_posix_spawn("/bin/true") }
        probe("execve", filter) { fs_probe_execve("/bin/false") }
        probe("clone3", filter, [ENOSYS]) { fs_probe_clone3() }
        probe("ptrace", filter) { fs_probe_ptrace() }
        probe("x32Syscall", filter, [EPERM, ENOSYS]) { fs_probe_x32() }
        // Namespaces and mounts. (Without the filter, mount's path lookup runs before its capability
        // check, so the probe's nonexistent target answers ENOENT either way.)
        probe("mount", filter) { fs_probe_mount() }
        probe("unshare", filter) { fs_probe_unshare() }
        probe("ioUringSetup", filter) { fs_probe_io_uring() }
        // Threads must keep working (JavaScriptCore's GC and JIT need them).
        let thread = fs_probe_thread()

        // JavaScriptCore: JIT-hot loop, allocation-heavy GC, a full request through the engine.
        let engine = Engine()
        let requestWorks = engine.selfCheck()
        var jsResult = ""
        if let group = JSContextGroupCreate(), let ctx = JSGlobalContextCreateInGroup(group, nil) {
            let script = JS.makeString(
                """
                let s = 0; for (let i = 0; i < 5e6; i++) s = (s + i * 7) % 1000003;
                let a = []; for (let i = 0; i < 3e5; i++) a.push({ i, t: 'x' + i });
                s + ':' + a.length
                """)
            var exception: JSValueRef?
            let value = JSEvaluateScript(ctx, script, nil, nil, 1, &exception)
            JSStringRelease(script)
            jsResult = exception == nil ? JS.string(ctx, value) ?? "" : "exception: " + (JS.string(ctx, exception) ?? "")
            JSGarbageCollect(ctx)
            JSGlobalContextRelease(ctx)
            JSContextGroupRelease(group)
        }
        let threads = threadCount()
        let jscWorks = requestWorks && jsResult.hasSuffix(":300000") && thread == 0

        let seccompExpected = !seccomp || protections.seccomp
        let passed =
            checks.allSatisfy(\.passed) && jscWorks && protections.fdsClosed && fdsAtStart == 3 && protections.noNewPrivs && seccompExpected

        var writer = JSONWriter()
        writer.raw("{\"selfTest\":true,\"seccompRequested\":\(seccomp),\"protections\":\(protections.json),\"checks\":{")
        for (index, check) in checks.enumerated() {
            if index > 0 { writer.raw(",") }
            writer.string(check.name)
            writer.raw(":{\"blocked\":\(check.blocked),\"result\":")
            writer.string(check.result == 0 ? "allowed" : errnoName(check.result))
            writer.raw(",\"expectBlocked\":\(check.expectBlocked),\"pass\":\(check.passed)}")
        }
        writer.raw("},\"threads\":{\"pthreadCreate\":")
        writer.string(thread == 0 ? "ok" : errnoName(thread))
        writer.raw(",\"count\":\(threads)},\"jsc\":{\"works\":\(jscWorks),\"request\":\(requestWorks),\"script\":")
        writer.string(jsResult)
        writer.raw(
            "},\"openFdsAfterHardening\":\(fdsAtStart),\"openFdsNow\":\(openFileDescriptors()),\"uid\":\(getuid()),\"pass\":\(passed)}")
        Output.writeLine(writer.bytes)
        return passed ? 0 : 1
    }

    static func errnoName(_ code: Int32) -> String {
        let names: [Int32: String] = [
            EPERM: "EPERM", ENOENT: "ENOENT", ESRCH: "ESRCH", EIO: "EIO", EBADF: "EBADF", EAGAIN: "EAGAIN",
            ENOMEM: "ENOMEM", EACCES: "EACCES", EFAULT: "EFAULT", EINVAL: "EINVAL", ENOSYS: "ENOSYS",
            EAFNOSUPPORT: "EAFNOSUPPORT", EPROTONOSUPPORT: "EPROTONOSUPPORT", ENETUNREACH: "ENETUNREACH",
            ECONNREFUSED: "ECONNREFUSED", EHOSTUNREACH: "EHOSTUNREACH", EADDRNOTAVAIL: "EADDRNOTAVAIL",
            ENOTSUP: "ENOTSUP", ENODEV: "ENODEV",
        ]
        return names[code] ?? "errno \(code)"
    }

    /// The "Threads:" line of /proc/self/status.
    static func threadCount() -> Int {
        let fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 8192)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return 0 }
        let text = String(decoding: buffer[0..<count], as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix("Threads:") {
            return Int(line.dropFirst("Threads:".count).trimmingPrefix(while: { $0 == " " || $0 == "\t" })) ?? 0
        }
        return 0
    }

    /// Entries of /proc/self/fd (excluding the directory handle used to list them).
    static func openFileDescriptors() -> Int {
        guard let directory = opendir("/proc/self/fd") else { return -1 }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let first = withUnsafeBytes(of: entry.pointee.d_name) { $0[0] }
            if first != UInt8(ascii: ".") { count += 1 }
        }
        return count - 1
    }
}
