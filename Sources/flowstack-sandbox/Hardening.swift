import CJavaScriptCore
import Glibc

/// What the child managed to enforce on itself; reported in the `ready` line.
struct Protections {
    var networkNamespace = false
    var seccomp = false
    var noNewPrivs = false
    var fdsClosed = false

    var json: String {
        "{\"network\":\(networkNamespace ? "\"namespace\"" : "\"none\""),\"seccomp\":\(seccomp),"
            + "\"noNewPrivs\":\(noNewPrivs),\"fdsClosed\":\(fdsClosed)}"
    }
}

/// Process hardening, applied once at start while the process is still single-threaded (JavaScriptCore
/// starts its GC, JIT and timer threads later). Every step is best-effort and reported.
enum Hardening {
    static func apply(seccomp installFilter: Bool = true) -> Protections {
        var protections = Protections()
        // A parent that goes away mid-write must not kill us with SIGPIPE; the write fails instead.
        signal(SIGPIPE, SIG_IGN)
        // 1. Nothing inherited beyond stdin, stdout and stderr.
        protections.fdsClosed = fs_close_fds_above_stdio() == 0
        // A crash must not write the heap (user data) to a core file.
        _ = fs_disable_core_dumps()
        // 3. A new user namespace (needs a single-threaded process) owning a new, empty network
        //    namespace: only a loopback interface that is down. The capabilities this gives inside
        //    the new user namespace are dropped right away.
        if fs_unshare_network() == 0 {
            protections.networkNamespace = true
            _ = fs_drop_capabilities()
        }
        // 2. execve can never gain privileges (setuid, file capabilities); required for seccomp.
        _ = fs_set_no_new_privs()
        protections.noNewPrivs = fs_no_new_privs_active() == 1
        // 4. The seccomp filter (see shim.h): no sockets, no new processes or programs, no ptrace,
        //    no namespaces or mounts; threads are allowed.
        if installFilter && protections.noNewPrivs {
            protections.seccomp = fs_install_seccomp() == 0 && fs_seccomp_mode() == 2
        }
        // 5. The working directory is the one the parent spawned us in (an empty temporary
        //    directory); nothing here reads the environment.
        return protections
    }
}
