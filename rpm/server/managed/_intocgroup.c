/* A program spawned straight into a cgroup: clone3(CLONE_INTO_CGROUP), which Python cannot
 * ask for (posix_spawn can, from glibc 2.39 only). Otherwise the server has to step into
 * the program's cgroup for the spawn and out again, and each such move takes the kernel's
 * global cgroup_threadgroup_rwsem for writing: on a machine at rest, that cost a START
 * more than the spawn itself.
 *
 * The spawn is posix_spawn's (glibc's spawni): the child shares the parent's memory and
 * runs on a stack of its own (CLONE_VM), the calling thread waits until it has exec'd or
 * failed (CLONE_VFORK), every signal is blocked around the clone so that no handler of the
 * server's runs in the child, and the child only makes system calls: it sets every signal
 * to its default, restores the mask, leads a new session, maps its descriptors, execs. The
 * clone is made by the asm below, because the child starts on its new stack and must call
 * its function there: a C call to syscall() would return into the parent's frame. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

#define CHILD_STACK (64 * 1024)

static PyObject *clone_refused; /* _intocgroup.CloneRefused: the clone3 failed, not the exec */

enum { ACTION_CLOSE = 0, ACTION_DUP2 = 1 };

struct spawn {
    const char *path;
    char **argv;
    char **envp;
    int (*actions)[3]; /* {ACTION_*, fd, new fd} */
    Py_ssize_t action_count;
    sigset_t mask; /* the mask to give the child: the calling thread's */
    volatile int error; /* set by the child where a step failed */
};

struct clone3_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
        set_tid, set_tid_size, cgroup;
};

static _Noreturn __attribute__((unused)) void child(struct spawn *spawn)
{
    struct sigaction default_action;
    memset(&default_action, 0, sizeof default_action);
    default_action.sa_handler = SIG_DFL;
    for (int signum = 1; signum < NSIG; signum++) {
        if (signum != SIGKILL && signum != SIGSTOP)
            sigaction(signum, &default_action, NULL); /* glibc's own two refuse: no matter */
    }
    sigprocmask(SIG_SETMASK, &spawn->mask, NULL);
    if (setsid() < 0)
        goto failed;
    for (Py_ssize_t i = 0; i < spawn->action_count; i++) {
        int *action = spawn->actions[i];
        if (action[0] == ACTION_CLOSE) {
            if (close(action[1]) < 0 && errno != EBADF)
                goto failed;
        } else if (dup2(action[1], action[2]) < 0) { /* never onto itself (Twisted's) */
            goto failed;
        }
    }
    execve(spawn->path, spawn->argv, spawn->envp);
failed:
    spawn->error = errno ? errno : EINVAL;
    _exit(127);
}

/* clone3 with the child calling child(spawn) on its stack; returns the pid or -errno.
 * Written for x86_64, the one machine it is tested on; elsewhere it returns -ENOSYS, and
 * the server steps into the program's cgroup for the spawn instead. */
static long clone_into(struct clone3_args *args, struct spawn *spawn)
{
    long result;
#if defined(__x86_64__)
    register long number __asm__("rax") = SYS_clone3;
    register struct clone3_args *a __asm__("rdi") = args;
    register size_t size __asm__("rsi") = sizeof *args;
    register struct spawn *s __asm__("r12") = spawn;
    register void (*run)(struct spawn *) __asm__("r13") = child;
    __asm__ volatile(
        "syscall\n\t"
        "test %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        "xor %%ebp, %%ebp\n\t"
        "mov %%r12, %%rdi\n\t"
        "call *%%r13\n\t"
        "hlt\n"
        "1:"
        : "+r"(number)
        : "r"(a), "r"(size), "r"(s), "r"(run)
        : "rcx", "r11", "memory");
    result = number;
#else
    (void)args;
    (void)spawn;
    result = -ENOSYS;
#endif
    return result;
}

/* A NULL-terminated array of the C strings in a sequence of bytes; *kept holds the
 * sequence's items (the caller releases it with the array, as the strings live in it). */
static char **c_strings(PyObject *sequence, const char *what, PyObject **kept)
{
    PyObject *items = PySequence_Fast(sequence, what);
    if (items == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    char **strings = PyMem_Calloc(count + 1, sizeof *strings);
    if (strings == NULL) {
        Py_DECREF(items);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        char *text;
        Py_ssize_t length;
        if (PyBytes_AsStringAndSize(PySequence_Fast_GET_ITEM(items, i), &text, &length) < 0)
            goto failed;
        if ((size_t)length != strlen(text)) {
            PyErr_SetString(PyExc_ValueError, "embedded null byte");
            goto failed;
        }
        strings[i] = text;
    }
    *kept = items;
    return strings;
failed:
    PyMem_Free(strings);
    Py_DECREF(items);
    return NULL;
}

static int read_actions(PyObject *sequence, struct spawn *spawn)
{
    PyObject *items = PySequence_Fast(sequence, "actions must be a sequence");
    if (items == NULL)
        return -1;
    spawn->action_count = PySequence_Fast_GET_SIZE(items);
    spawn->actions = PyMem_Calloc(spawn->action_count + 1, sizeof *spawn->actions);
    if (spawn->actions == NULL) {
        Py_DECREF(items);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < spawn->action_count; i++) {
        int *action = spawn->actions[i];
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(items, i), "iii", &action[0],
                              &action[1], &action[2])) {
            Py_DECREF(items);
            return -1;
        }
    }
    Py_DECREF(items);
    return 0;
}

static PyObject *spawn_into(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    struct spawn spawn;
    int cgroup;
    PyObject *result = NULL, *argv_items = NULL, *envp_items = NULL;
    memset(&spawn, 0, sizeof spawn);
    if (nargs != 5 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "spawn_into(path: bytes, argv, envp, actions, cgroup_fd: int)");
        return NULL;
    }
    spawn.path = PyBytes_AS_STRING(args[0]);
    long fd = PyLong_AsLong(args[4]);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "cgroup_fd must be a file descriptor");
        return NULL;
    }
    cgroup = (int)fd;
    spawn.argv = c_strings(args[1], "argv must be a sequence of bytes", &argv_items);
    if (spawn.argv == NULL)
        goto done;
    spawn.envp = c_strings(args[2], "envp must be a sequence of bytes", &envp_items);
    if (spawn.envp == NULL)
        goto done;
    if (read_actions(args[3], &spawn) < 0)
        goto done;
    char *stack = PyMem_RawMalloc(CHILD_STACK);
    if (stack == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    struct clone3_args clone_args;
    memset(&clone_args, 0, sizeof clone_args);
    clone_args.flags = CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP;
    clone_args.exit_signal = SIGCHLD;
    clone_args.stack = (uint64_t)(uintptr_t)stack;
    clone_args.stack_size = CHILD_STACK;
    clone_args.cgroup = (uint64_t)cgroup;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &spawn.mask);
    long pid = clone_into(&clone_args, &spawn);
    pthread_sigmask(SIG_SETMASK, &spawn.mask, NULL);
    PyMem_RawFree(stack);
    if (pid < 0) {
        errno = (int)-pid;
        PyErr_SetFromErrno(clone_refused);
    } else if (spawn.error != 0) { /* it exited, exec'ing nothing: reaped here */
        while (waitpid((pid_t)pid, NULL, 0) < 0 && errno == EINTR)
            ;
        PyObject *name = PyUnicode_DecodeFSDefaultAndSize(PyBytes_AS_STRING(args[0]),
                                                          PyBytes_GET_SIZE(args[0]));
        errno = spawn.error;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, name);
        Py_XDECREF(name);
    } else {
        result = PyLong_FromLong(pid);
    }
done:
    PyMem_Free(spawn.argv);
    PyMem_Free(spawn.envp);
    PyMem_Free(spawn.actions);
    Py_XDECREF(argv_items);
    Py_XDECREF(envp_items);
    return result;
}

static PyMethodDef methods[] = {
    {"spawn_into", (PyCFunction)(void (*)(void))spawn_into, METH_FASTCALL,
     "spawn_into(path, argv, envp, actions, cgroup_fd) -> pid: the program spawned in the "
     "cgroup open at cgroup_fd, leading a new session, its signals at their defaults, "
     "actions ((0, fd, 0) close, (1, fd, new_fd) dup2) applied in order; OSError as "
     "os.posix_spawn raises it, or CloneRefused (an OSError) where the kernel refused the "
     "clone3 itself."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_intocgroup", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__intocgroup(void)
{
    PyObject *created = PyModule_Create(&module);
    if (created == NULL)
        return NULL;
    clone_refused = PyErr_NewException("_intocgroup.CloneRefused", PyExc_OSError, NULL);
    if (clone_refused == NULL || PyModule_AddObjectRef(created, "CloneRefused", clone_refused) < 0) {
        Py_DECREF(created);
        return NULL;
    }
    return created;
}
