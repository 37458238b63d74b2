// JavaScriptCore's C API for the flowstack-sandbox executable, plus the few exported private
// functions it needs and the small Linux helpers (seccomp, unshare, close_range) it calls.
#ifndef FLOWSTACK_CJAVASCRIPTCORE_SHIM_H
#define FLOWSTACK_CJAVASCRIPTCORE_SHIM_H

#include <JavaScriptCore/JavaScript.h>

#include <errno.h>
#include <pthread.h>
#include <spawn.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

// ---------------------------------------------------------------------------------------------
// Private JavaScriptCore API (exported by libjavascriptcoregtk-4.1, declared in JSContextRefPrivate.h
// upstream, which the Debian package does not ship).

typedef bool (*JSShouldTerminateCallback)(JSContextRef ctx, void *context);

/// Arms the group's watchdog: JavaScript running longer than `limit` seconds in one VM entry calls
/// `callback`; returning true terminates the running script (an uncatchable exception).
extern void JSContextGroupSetExecutionTimeLimit(JSContextGroupRef group, double limit,
                                                JSShouldTerminateCallback callback, void *context);
extern void JSContextGroupClearExecutionTimeLimit(JSContextGroupRef group);

/// Disables `eval(...)` and the Function constructors (Function, AsyncFunction, GeneratorFunction...)
/// in one global context; using them throws an EvalError carrying `message`.
extern void JSGlobalContextSetEvalEnabled(JSGlobalContextRef ctx, bool enabled, JSStringRef message);

/// A full, synchronous garbage collection (JSGarbageCollect only hints that one would be welcome).
extern void JSSynchronousGarbageCollectForDebugging(JSContextRef ctx);

// ---------------------------------------------------------------------------------------------
// Process hardening helpers. Each returns 0 on success or an errno value.

#ifndef __NR_close_range
#define __NR_close_range 436
#endif
#ifndef __NR_clone3
#define __NR_clone3 435
#endif
#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#define __NR_io_uring_enter 426
#define __NR_io_uring_register 427
#endif
#ifndef SECCOMP_RET_KILL_PROCESS
#define SECCOMP_RET_KILL_PROCESS 0x80000000U
#endif
#ifndef SECCOMP_FILTER_FLAG_TSYNC
#define SECCOMP_FILTER_FLAG_TSYNC 1UL
#endif

#define FS_CLONE_THREAD 0x00010000U
// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
#define FS_CLONE_NEW_NAMESPACES (0x00020000U | 0x02000000U | 0x04000000U | 0x08000000U | 0x10000000U | 0x20000000U | 0x40000000U)

/// Closes every file descriptor above 2 (close_range, or a loop up to the soft RLIMIT_NOFILE).
static inline int fs_close_fds_above_stdio(void) {
    if (syscall(__NR_close_range, 3U, ~0U, 0U) == 0) {
        return 0;
    }
    struct rlimit rl;
    long max = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        max = (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1UL << 20)) ? (1L << 20) : (long)rl.rlim_cur;
    }
    for (long fd = 3; fd < max; fd++) {
        (void)close((int)fd);
    }
    return 0;
}

/// prctl(PR_SET_NO_NEW_PRIVS): execve can never gain privileges again (also required for seccomp).
static inline int fs_set_no_new_privs(void) {
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 ? 0 : errno;
}

/// Disables core dumps (a crash must not write user data to disk).
static inline int fs_disable_core_dumps(void) {
    struct rlimit rl = { 0, 0 };
    return setrlimit(RLIMIT_CORE, &rl) == 0 ? 0 : errno;
}

/// unshare(CLONE_NEWUSER | CLONE_NEWNET): a private network namespace with only a down loopback.
/// Must run while the process is single-threaded.
static inline int fs_unshare_network(void) {
    return syscall(SYS_unshare, 0x10000000L /* CLONE_NEWUSER */ | 0x40000000L /* CLONE_NEWNET */) == 0 ? 0 : errno;
}

/// Empties the capability bounding, permitted, effective and inheritable sets (after unshare the
/// process holds every capability inside its new user namespace; it needs none).
static inline int fs_drop_capabilities(void) {
    for (int cap = 0; cap <= 63; cap++) {
        (void)prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
    }
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    return syscall(SYS_capset, &header, data) == 0 ? 0 : errno;
}

/// 1 when no_new_privs is set.
static inline int fs_no_new_privs_active(void) {
    return prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
}

/// 2 when a seccomp filter is active (SECCOMP_MODE_FILTER).
static inline int fs_seccomp_mode(void) {
    return prctl(PR_GET_SECCOMP, 0, 0, 0, 0);
}

#define FS_DENY(nr) \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), \
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))

/// Installs the seccomp-BPF filter (x86_64 only; returns ENOTSUP elsewhere). Requires no_new_privs.
static inline int fs_install_seccomp(void) {
#if defined(__x86_64__)
    struct sock_filter filter[] = {
        // Wrong architecture (e.g. the 32-bit int 0x80 entry): kill.
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        // The x32 ABI shares AUDIT_ARCH_X86_64 and sets bit 30 of the number: refuse all of it.
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000U, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        // clone3 hides its flags in memory: ENOSYS makes glibc fall back to clone, whose flags we see.
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        // clone: only threads (CLONE_THREAD set, no namespace flags); anything else is a new process.
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 5),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])), // low 32 bits of flags
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, FS_CLONE_NEW_NAMESPACES, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, FS_CLONE_THREAD, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        // Networking.
        FS_DENY(__NR_socket), FS_DENY(__NR_socketpair), FS_DENY(__NR_connect), FS_DENY(__NR_bind),
        FS_DENY(__NR_listen), FS_DENY(__NR_accept), FS_DENY(__NR_accept4),
        // New processes and programs.
        FS_DENY(__NR_execve), FS_DENY(__NR_execveat), FS_DENY(__NR_fork), FS_DENY(__NR_vfork),
        // Other processes' memory.
        FS_DENY(__NR_ptrace), FS_DENY(__NR_process_vm_readv), FS_DENY(__NR_process_vm_writev),
        // Namespaces and mounts.
        FS_DENY(__NR_mount), FS_DENY(__NR_umount2), FS_DENY(__NR_pivot_root), FS_DENY(__NR_chroot),
        FS_DENY(__NR_unshare), FS_DENY(__NR_setns),
        // Kernel attack surface a JavaScript engine never needs (io_uring can also open sockets
        // without the socket syscall).
        FS_DENY(__NR_io_uring_setup), FS_DENY(__NR_io_uring_enter), FS_DENY(__NR_io_uring_register),
        FS_DENY(__NR_bpf), FS_DENY(__NR_perf_event_open), FS_DENY(__NR_userfaultfd),
        FS_DENY(__NR_keyctl), FS_DENY(__NR_add_key), FS_DENY(__NR_request_key),
        FS_DENY(__NR_kexec_load), FS_DENY(__NR_init_module), FS_DENY(__NR_finit_module),
        FS_DENY(__NR_open_by_handle_at),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { (unsigned short)(sizeof(filter) / sizeof(filter[0])), filter };
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) == 0) {
        return 0;
    }
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == 0) {
        return 0;
    }
    return errno;
#else
    return ENOTSUP;
#endif
}

#undef FS_DENY

// ---------------------------------------------------------------------------------------------
// Probes for `flowstack-sandbox --self-test`: each attempts one forbidden operation and returns
// 0 when it succeeded (and undid it) or the errno that refused it.

static inline int fs_probe_socket(int domain, int type) {
    int fd = socket(domain, type, 0);
    if (fd >= 0) { close(fd); return 0; }
    return errno;
}

static inline int fs_probe_socketpair(void) {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0) { close(fds[0]); close(fds[1]); return 0; }
    return errno;
}

/// A TCP connection to 127.0.0.1:port. Without seccomp, ENETUNREACH shows the empty network namespace.
static inline int fs_probe_tcp_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return errno;
    struct sockaddr_in address;
    memset(&address, 0, sizeof(address));
    address.sin_family = AF_INET;
    address.sin_port = htons((uint16_t)port);
    address.sin_addr.s_addr = htonl(0x7f000001U);
    int result = connect(fd, (struct sockaddr *)&address, sizeof(address)) == 0 ? 0 : errno;
    close(fd);
    return result;
}

static inline int fs_probe_fork(void) {
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid < 0) return errno;
    (void)waitpid(pid, NULL, 0);
    return 0;
}

static inline int fs_probe_posix_spawn(const char *path) {
    pid_t pid;
    char *argv[] = { (char *)path, NULL };
    char *envp[] = { NULL };
    int result = posix_spawn(&pid, path, NULL, NULL, argv, envp);
    if (result == 0) (void)waitpid(pid, NULL, 0);
    return result;
}

/// execve in a forked child when fork works; otherwise in this process (if that succeeded the
/// process would become `path`, so pass a program that exits non-zero: the report never appears).
static inline int fs_probe_execve(const char *path) {
    char *argv[] = { (char *)path, NULL };
    char *envp[] = { NULL };
    pid_t pid = fork();
    if (pid == 0) {
        execve(path, argv, envp);
        _exit(errno == EPERM ? 100 : 101);
    }
    if (pid > 0) {
        int status = 0;
        (void)waitpid(pid, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 100) return EPERM;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 101) return EACCES;
        return 0;
    }
    execve(path, argv, envp);
    return errno;
}

static inline int fs_probe_clone3(void) {
    return syscall(__NR_clone3, NULL, 0) == -1 ? errno : 0;
}

/// An invalid ptrace request: EPERM means the filter refused it, anything else reached the kernel.
static inline int fs_probe_ptrace(void) {
    return syscall(SYS_ptrace, -1L, 0L, 0L, 0L) == -1 ? errno : 0;
}

static inline int fs_probe_unshare(void) {
    return syscall(SYS_unshare, 0x40000000L /* CLONE_NEWNET */) == 0 ? 0 : errno;
}

static inline int fs_probe_mount(void) {
    return syscall(SYS_mount, "none", "/nonexistent-flowstack-probe", "tmpfs", 0L, NULL) == 0 ? 0 : errno;
}

static inline int fs_probe_io_uring(void) {
    return syscall(__NR_io_uring_setup, 1L, NULL) == -1 ? errno : 0;
}

/// getpid through the x32 ABI (bit 30 set).
static inline int fs_probe_x32(void) {
    return syscall(0x40000000L | SYS_getpid) == -1 ? errno : 0;
}

static inline void *fs_probe_thread_main(void *argument) {
    *(int *)argument = 42;
    return NULL;
}

static inline int fs_probe_thread(void) {
    pthread_t thread;
    int value = 0;
    int result = pthread_create(&thread, NULL, fs_probe_thread_main, &value);
    if (result != 0) return result;
    (void)pthread_join(thread, NULL);
    return value == 42 ? 0 : EINVAL;
}

#endif
