"""The rpm server as a Twisted service: opens the state, adopts survivors, listens."""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import signal

from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from rpm.server.auth import load_token
from rpm.server.config import ServerConfig
from rpm.server.control import Controller
from rpm.server.core import CONTAINMENT_GROUPS, Core
from rpm.server.declared import DeclaredPrograms
from rpm.server.factory import RPMFactory
from rpm.server.faults import in_thread, keep_threads_ready
from rpm.server.managed.adoption import take_over
from rpm.server.managed.asyncstore import AsyncStore
from rpm.server.managed.cgroups import ProgramCgroups
from rpm.server.managed.guard import RegistryGuard
from rpm.server.managed.launch import Launcher
from rpm.server.managed.logchanges import LogChanges
from rpm.server.managed.logfiles import LogFiles
from rpm.server.managed.memoryguard import MemoryGuard
from rpm.server.managed.outputs import OutputTracker
from rpm.server.managed.pruning import Pruner
from rpm.server.managed.session import close_inherited_on_exec
from rpm.server.managed.store import Store
from rpm.server.managed.supervisor import Supervisor
from rpm.server.metrics import metrics_site
from rpm.server.procs.identity import procfs_available
from rpm.server.procs.policy import SignalPolicy
from rpm.server.procs.procfs import ProcfsScanner
from rpm.server.procs.reaper import ExitReaper, become_subreaper
from rpm.server.procs.sampler import Sampler
from rpm.server.procs.scan import Scanner
from rpm.server.procs.vitals import VitalsReader
from rpm.server.serverlog import ServerLog
from rpm.server.statedir import StateDirBusy, StateLock, prepare_state_dir
from rpm.server.welcome import listening_address, ways_in, welcome

log = Logger()
SHUTDOWN_GRACE = 5.0


def raise_fd_limit() -> None:
    """Allow as many connections as the hard limit permits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def state_marker(state_dir: str) -> str:
    """A short name for a state directory, in its programs' RPM_RUN marker, so that two
    servers on one machine never take each other's programs for their own."""
    return hashlib.sha256(os.path.realpath(state_dir).encode()).hexdigest()[:12]


class RPMService(service.Service):
    """Everything the server runs, started and stopped with the reactor."""

    def __init__(self, config: ServerConfig, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.reactor = reactor
        self.core: Core | None = None
        self.ports: list = []
        self._exits: ExitReaper | None = None
        self._lock: StateLock | None = None
        self._pruner: Pruner | None = None
        self._guard: RegistryGuard | None = None
        self._memory: MemoryGuard | None = None
        self._launcher: Launcher | None = None
        self._ways_in: list[list[str]] = []
        self._server_log = (
            ServerLog(config.server_log, config.server_log_size, config.server_log_keep)
            if config.server_log
            else None
        )

    def setServiceParent(self, parent) -> None:
        super().setServiceParent(parent)
        if self._server_log is not None:
            self._server_log.offer(parent)

    def build(self) -> Core:
        """Open the state directory and registry, adopt survivors, and wire the parts."""
        config, reactor = self.config, self.reactor
        prepare_state_dir(config.state_dir)
        self._lock = StateLock(config.state_dir)
        self._lock.acquire()
        token = None if config.no_auth else load_token(config.state_dir, config.token_file)
        store = AsyncStore(reactor, Store(os.path.join(config.state_dir, "rpm.db")))
        store.start()
        logfiles = LogFiles(os.path.join(config.state_dir, "logs"))
        outputs = OutputTracker(
            reactor,
            logfiles,
            max_bytes=config.log_max_bytes,
            run=in_thread,
            changes=LogChanges(reactor, logfiles.directory),
        )
        supervisor = self._supervisor(store, outputs)
        scanner = ProcfsScanner() if procfs_available() else Scanner()
        sampler = Sampler(
            reactor,
            scanner.scan,
            supervisor.managed_keys,
            restarting_rows=supervisor.restarting_rows,
            program_names=supervisor.names.of_runs,
            vitals=VitalsReader().read,
            run=in_thread,
        )
        policy = SignalPolicy(config.signal_scope, supervisor.is_managed)
        controller = Controller(reactor, supervisor, policy, sampler)
        core = Core(
            reactor, config, token, store, logfiles, outputs, sampler, supervisor, controller
        )
        supervisor.observe(core.broadcast)
        self._pruner = Pruner(
            reactor, store, logfiles, config.keep_ended, config.audit_keep_days, in_thread
        )
        supervisor.observe(self._pruner.observe)
        take_over(
            reactor,
            supervisor,
            store.sync.records(only_unfinished=True),
            store.sync.next_id(),
            store.sync.next_run_id(),
        )
        outputs.start()
        self._pruner.prune()
        self._guard = RegistryGuard(reactor, store, supervisor.records)
        self._guard.start()
        self._memory = MemoryGuard(
            reactor,
            supervisor,
            lambda pid, why: defer.Deferred.fromCoroutine(controller.restart(pid, None, why)),
            run=in_thread,
        )
        self._memory.start()
        return core

    def _supervisor(self, store: AsyncStore, outputs: OutputTracker) -> Supervisor:
        """The supervisor, its launcher and, where allowed, its programs' cgroups."""
        config, instance = self.config, state_marker(self.config.state_dir)
        launcher = self._launcher = Launcher(
            self.reactor,
            umask=config.child_umask,
            allowed=config.allowed_programs,
            instance=instance,
        )
        cgroups = ProgramCgroups.create(instance) if config.contain else None
        if cgroups is not None:
            launcher.spawn_guard = cgroups.lock
            store.after_spawns = cgroups.end_visit
        return Supervisor(
            self.reactor, store, launcher, outputs, config.max_managed, cgroups, spawn_in_store=True
        )

    def startService(self) -> None:
        super().startService()
        if self._server_log is not None:
            self._server_log.attach()
        raise_fd_limit()
        keep_threads_ready(self.reactor)
        close_inherited_on_exec()
        try:
            self.core = self.build()
        except StateDirBusy as err:  # another server took it since the preflight check
            log.critical("{error}; stopping", error=err)
            self.reactor.stop()
            return
        self._contain(self.core)
        self._declare(self.core)
        factory = RPMFactory(self.core)
        self._serve_metrics(factory)
        for description in self.config.listen:
            serverFromString(self.reactor, description).listen(factory).addCallbacks(
                self._listening,
                self._cannot_listen,
                callbackArgs=(description,),
                errbackArgs=(description,),
            )

    def _serve_metrics(self, factory: RPMFactory) -> None:
        """--metrics: /metrics for Prometheus, on its own listener."""
        if self.config.metrics is None:
            return
        site = metrics_site(self.core, lambda: factory.connections)
        listening = serverFromString(self.reactor, self.config.metrics).listen(site)
        listening.addCallbacks(
            lambda port: (self.ports.append(port), log.info("metrics on {w}", w=port.getHost())),
            lambda failure: log.critical("cannot serve --metrics: {e}", e=failure.value),
        )

    def _declare(self, core: Core) -> None:
        """Start (or adopt) the programs file's programs; SIGHUP applies its changes, as
        RELOAD does (only for a real server: a test's in-process one leaves signals alone)."""
        if self.config.programs is None:
            return
        core.declared = DeclaredPrograms(self.config.programs, core.supervisor, core.controller)
        defer.Deferred.fromCoroutine(core.declared.start()).addErrback(
            lambda failure: log.failure("cannot start the programs file's programs", failure)
        )
        if self.config.contain:
            signal.signal(signal.SIGHUP, lambda *_: self.reactor.callFromThread(self._hangup))

    def _hangup(self) -> None:
        """SIGHUP: RELOAD, its outcome logged."""

        def done(changes: list[str]) -> None:
            log.info("SIGHUP: the programs file applied: {changes}", changes=changes)

        reloaded = defer.Deferred.fromCoroutine(self.core.declared.reload())
        reloaded.addCallbacks(
            done, lambda f: log.warn("SIGHUP: the programs file is not applied: {e}", e=f.value)
        )

    def _contain(self, core: Core) -> None:
        """Become a child subreaper where Linux allows it, so orphans of managed programs
        come back to the server (and are reaped by it); say which containment holds. From
        now on, a SIGCHLD reaps only the children that exited (ExitReaper)."""
        means = ["cgroups"] if core.supervisor.cgroups is not None else []
        subreaper = self.config.contain and become_subreaper()
        if subreaper:
            means.append("subreaper")
        self._exits = ExitReaper(self.reactor, core.supervisor.unadopted, orphans=subreaper)
        self._exits.install()
        core.containment = ", ".join([*means, CONTAINMENT_GROUPS])
        log.info("STOP finds a program's processes by: {how}", how=core.containment)

    def _listening(self, port, description: str) -> None:
        self.ports.append(port)
        where = listening_address(port)
        log.info("rpm listening on {where}", where=where)
        self._ways_in.append(ways_in(description, where))
        if self.config.port_file:
            with open(self.config.port_file, "a", encoding="utf-8") as handle:
                handle.write(f"{where}\n")
        if len(self.ports) == len(self.config.listen):
            log.info("{text}", text=welcome(self.config, self._ways_in))

    def _cannot_listen(self, failure, description: str) -> None:
        log.critical(
            "cannot listen on {description}: {error}; stopping",
            description=description,
            error=failure.getErrorMessage(),
        )
        self.reactor.stop()

    @defer.inlineCallbacks
    def stopService(self):
        if not self.running:  # stopping twice (shutdown racing a test's teardown) is harmless
            return
        super().stopService()
        yield defer.gatherResults([defer.maybeDeferred(port.stopListening) for port in self.ports])
        self.ports, self._ways_in = [], []
        core = self.core
        if core is None:
            return
        if self.config.stop_children_on_exit:
            log.info("stopping {n} managed processes", n=len(core.supervisor.running()))
            yield core.controller.stop_all(SHUTDOWN_GRACE)
        core.supervisor.cancel_restarts()
        self._launcher.close_writer_channel()
        self._pruner.stop()
        self._guard.stop()
        self._memory.stop()
        if core.supervisor.cgroups is not None:
            core.supervisor.cgroups.tidy()
        if self._exits is not None:
            self._exits.uninstall()
        core.sampler.stop()
        core.outputs.stop()
        core.flush_audit()
        core.store.stop()
        if self._lock is not None:
            self._lock.release()
