"""``meshplane serve``: wires settings, store, services, the REST API and the xDS server.

The one place where components are built and connected (nothing happens at import time).
The API (uvicorn) and the xDS server (grpc.aio) share one asyncio event loop; SIGTERM and
SIGINT stop both cleanly.  API authentication (``meshplane.api.auth``) is on unless the
server binds loopback only; with ``--tls-cert``/``--tls-key`` both ports speak TLS.  What is
checked and opened before the components are built is in :mod:`meshplane.server.startup`; the
publishing of this replica's proxies to the fleet in :mod:`meshplane.server.presence`.  Called
by the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import IO, Any

import grpc
import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from meshplane.api.app import build_app
from meshplane.api.authority import AuthorityApi
from meshplane.authority.server_tls import ensure_server_certificate
from meshplane.console import ConsoleApi
from meshplane.errors import LocalError
from meshplane.nameserver.server import DnsServer, Upstream, resolv_conf_upstreams
from meshplane.server import gc_pacing
from meshplane.server.fleet import FleetApi
from meshplane.server.http import guarded_protocol, quiet_accept_errors
from meshplane.server.identity_state import IdentityState
from meshplane.server.presence import ReplicaProxies
from meshplane.server.proxy_auth import ProxyAuthorizer
from meshplane.server.serving import XdsServing
from meshplane.server.settings import Settings, is_loopback
from meshplane.server.startup import (
    _read_tls,
    api_token_box,
    check_ports,
    lock_data_dir,
    open_vault,
    open_with_retry,
)
from meshplane.server.workers import WorkerMetrics, XdsWorkers
from meshplane.service.access import ANONYMOUS
from meshplane.service.apply import ManifestService
from meshplane.service.arns import Partition
from meshplane.service.ca_rotation import CaRotation
from meshplane.service.cloudmap_metrics import RegistryCollector
from meshplane.service.dns_answers import Answers
from meshplane.service.health_checks import HealthChecker
from meshplane.service.leases import LeaseSweeper
from meshplane.service.resources import Caller, ResourceService
from meshplane.service.tokens import TokenService
from meshplane.service.vips import VipAllocator, parse_range
from meshplane.store import Store
from meshplane.store.lease import DutyLease
from meshplane.store.presence import FleetProxies
from meshplane.store.sql import describe_url
from meshplane.telemetry import TapHub, TelemetryApi, TelemetryCollector, TelemetryStore
from meshplane.telemetry.stats import Flush
from meshplane.telemetry.window import ProxyKey

log = logging.getLogger("meshplane")


class DnsPortError(LocalError):
    """The DNS server cannot bind its port."""


class Application:
    """Every long-lived component of a running control plane."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock: IO[str] | None = None
        if settings.store.database_url is None:
            self._lock = lock_data_dir(settings.store.data_dir)
        sql = open_with_retry(settings.store)
        self.store: Store = sql  # the rest of the application sees the protocols
        self.partition = Partition(settings.region, settings.account_id)
        self.caller = Caller(settings.account_id, ANONYMOUS)
        self.service = ResourceService(self.store, self.partition)
        self.vault = open_vault(self.store, settings.store)
        self.replica = f"{socket.gethostname()}:{settings.api.port}"
        """This replica's id in the fleet (the duty lease, ``meshplane status``)."""
        self.manifests = ManifestService(self.store)
        self.tokens: TokenService | None = None
        if settings.auth is not None:
            box = api_token_box(self.vault, settings.auth.key_file)
            self.tokens = TokenService(self.store, box, clock=time.time)
        credentials = None
        if settings.tls is not None:
            if settings.tls.issue is not None:
                folder = settings.tls.cert_file.parent
                issued = ensure_server_certificate(folder, settings.tls.issue)
                log.info(
                    "API and xDS TLS: certificate for %s issued by meshplane's control-plane CA;"
                    " clients trust %s (--tls-ca, --xds-ca)",
                    ", ".join(settings.tls.issue),
                    issued.ca_file,
                )
            cert, key = _read_tls(settings.tls)
            credentials = grpc.ssl_server_credentials([(key, cert)])
        self.registry = CollectorRegistry()
        data_dir = settings.store.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        # identity state: in a fleet, shared by every replica of the database (the vault)
        self.identity = IdentityState.open(data_dir, settings.ca, self.vault)
        self.authorities = self.identity.authorities
        self.proxy_tokens = self.identity.proxy_tokens
        self.revocations = self.identity.revocations
        if self.vault is not None:
            self.store.add_secret_listener(self._secrets_changed)
        self._loop: asyncio.AbstractEventLoop | None = None
        with_workers = settings.xds.workers > 1
        self.authorizer = ProxyAuthorizer(
            self.proxy_tokens,
            required=settings.xds.require_proxy_auth,
            # with workers, /metrics shows theirs (the proxies are authorized there)
            registry=CollectorRegistry() if with_workers else self.registry,
            revocations=self.revocations,
        )
        self.telemetry = TelemetryStore(settings.telemetry)
        self.registry.register(TelemetryCollector(self.telemetry))
        self.serving: XdsServing | None = None
        """The xDS port's services when this process serves it (``--xds-workers 1``)."""
        self.workers: XdsWorkers | None = None
        """The xDS worker processes (``--xds-workers N``, N > 1)."""
        self.worker_metrics: WorkerMetrics | None = None
        """Their metrics, summed into this process's ``/metrics``."""
        if with_workers:
            self.workers = XdsWorkers(
                settings,
                on_flush=self._worker_flush,
                on_tap=lambda identity, entry: self.taps.publish(identity, entry),
                on_gone=self._worker_gone,
            )
            self.worker_metrics = WorkerMetrics(self.workers)
            self.registry.register(self.worker_metrics)
            self.taps = TapHub(
                lambda _: self._send_taps(),
                max_sessions=settings.telemetry.max_taps,
                queue_size=settings.telemetry.tap_queue,
            )
            self.authorities.add_listener(lambda: self._tell_workers(("ca",)))
        else:
            self.taps = TapHub(
                lambda secret_of: self._serving().control.set_taps(secret_of),
                max_sessions=settings.telemetry.max_taps,
                queue_size=settings.telemetry.tap_queue,
            )
            self.serving = XdsServing(
                settings.xds,
                self.store,
                self.registry,
                authorities=self.authorities,
                authorizer=self.authorizer,
                telemetry=self.telemetry,
                taps=self.taps,
                credentials=credentials,
                tracing=settings.tracing,
            )
        self._revisions_task: asyncio.Task[None] | None = None
        self.xds_port = settings.xds.port
        self.answers = Answers(self.store)
        upstreams = (
            [Upstream.parse(u) for u in settings.dns.upstreams]
            if settings.dns.upstreams is not None
            else resolv_conf_upstreams()
        )
        self.dns = DnsServer(self.answers, upstreams=upstreams, registry=self.registry)
        self.dns_port = settings.dns.port
        self.lease = DutyLease(sql, self.replica)  # the fleet's lease is SQL's
        self.presence = FleetProxies(sql, self.replica) if sql.postgres else None
        self.proxies = ReplicaProxies(
            self.presence, self.replica, serving=self.serving, workers=self.workers
        )
        self.leases = LeaseSweeper(self.store, duty=lambda: self.lease.held)
        self.health_checks = HealthChecker(
            self.store,
            replica=self.replica,
            interval=settings.dns.health_check_interval,
            duty=lambda: self.lease.held,
        )
        self.vips = VipAllocator(
            self.store, parse_range(settings.dns.vip_range), duty=lambda: self.lease.held
        )
        self.ca_rotation = CaRotation(
            self.store, self.authorities, replica=self.replica, duty=lambda: self.lease.held
        )
        self.registry.register(RegistryCollector(self.store))
        self.startup: list[Callable[[], Any]] = [
            self._start_lease,
            self.vips.start,
            self.leases.start,
            self.health_checks.start,
            self.ca_rotation.start,
            self._start_dns,
            self._start_xds,
            self.proxies.start,
        ]
        self.shutdown: list[Callable[[], Any]] = [
            self.vips.stop,
            self.leases.stop,
            self.health_checks.stop,
            self.ca_rotation.stop,
            self.dns.stop,
            self._stop_xds,
            self._stop_lease,
            self.proxies.stop,
        ]
        self.app: Starlette = build_app(
            self.service,
            self.caller,
            self.manifests,
            registry=self.registry,
            before_metrics=self.worker_metrics.refresh if self.worker_metrics else None,
            proxies=self.proxy_status,
            lifespan=self._lifespan,
            extra_routes=AuthorityApi(
                self.store,
                tokens=self.proxy_tokens,
                authorities=self.authorities,
                revocations=self.revocations,
                on_revoked=self._close_revoked,
            ).routes()
            + TelemetryApi(self.telemetry, self.taps).routes()
            + ConsoleApi(self.store, self.telemetry, self.partition, self.proxy_status).routes()
            + FleetApi(
                sql,
                self.lease,
                self.replica,
                workers=self.workers.states if self.workers is not None else None,
            ).routes(),
            tokens=self.tokens,
            audit_log=self.store,
            require_auth=settings.auth is not None and settings.auth.required,
            limits=settings.api.limits,
            manifest_limits=settings.api.manifests,
            strict_manifests=settings.strict_manifests,
        )

    async def _start_lease(self) -> None:
        self.lease.start()

    async def _stop_lease(self) -> None:
        await asyncio.to_thread(self.lease.stop)

    def _secrets_changed(self, names: set[str]) -> None:
        self.identity.reload(names, self._loop, self._close_revoked)

    def _serving(self) -> XdsServing:
        assert self.serving is not None
        return self.serving

    def _close_revoked(self) -> int:
        """A proxy token was revoked: end the streams that were opened with it (how many: of
        this process; the workers end theirs)."""
        if self.serving is not None:
            return self.serving.close_revoked()
        self._tell_workers(("revoked",))
        return 0

    def _tell_workers(self, message: tuple[Any, ...]) -> None:
        if self.workers is not None:
            self.workers.broadcast(message)

    def _send_taps(self) -> None:
        """The tapped proxies changed: every worker gets the filters and their key."""
        assert self.workers is not None
        filters = [session.filter for session in self.taps.sessions.values()]
        self.workers.broadcast(("taps", self.taps.key, filters), remember="taps")

    def _worker_flush(self, worker: int, key: ProxyKey, flush: Flush | None) -> None:
        """A telemetry flush a worker received (None: that proxy's stream ended)."""
        del worker
        window = self.telemetry.window(key)
        if window is None:
            return
        if flush is None:
            window.connected = False
        else:
            window.connected = True
            window.add(flush)

    def _worker_gone(self, worker: int, keys: set[ProxyKey]) -> None:
        """A worker exited: the metrics streams it had are no longer connected."""
        for key in keys:
            self._worker_flush(worker, key, None)

    async def _follow_revisions(self) -> None:
        """Tell the workers each time this process's store moves (they follow SQLite by
        catching up with the change table from their own revision)."""
        assert self.workers is not None
        revision = self.store.revision
        while True:
            revision = await self.store.wait_for_revision(revision)
            self.workers.broadcast(("revision", revision))

    async def _start_xds(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.workers is not None:
            self.xds_port = await self.workers.start()
            self._revisions_task = asyncio.create_task(self._follow_revisions())
            log.info(
                "meshplane xDS (ADS) on %s:%d: %d worker processes (pids %s)",
                self.settings.xds.host,
                self.xds_port,
                self.workers.count,
                ", ".join(str(pid) for pid in self.workers.pids()),
            )
        else:
            self.xds_port = await self._serving().start()
            log.info("meshplane xDS (ADS) on %s:%d", self.settings.xds.host, self.xds_port)
        log.info(
            "proxy authentication: %s; mesh CAs in %s (trust domain %s)",
            "required (proxy tokens)"
            if self.settings.xds.require_proxy_auth
            else "optional on loopback (a token that is sent is checked)",
            self.authorities.keystore.location,
            self.authorities.trust_domain,
        )
        if self.settings.tls is None and not is_loopback(self.settings.xds.host):
            log.warning(
                "the xDS port is reachable from other hosts without TLS: proxy tokens and "
                "proxy private keys cross the network in clear;"
                " use --tls-issue or --tls-cert/--tls-key"
            )

    async def _start_dns(self) -> None:
        dns = self.settings.dns
        if dns.port == 0:
            log.info("mesh DNS server: off (--dns-port 0)")
            return
        try:
            self.dns_port = await self.dns.start(dns.host, dns.port)
        except OSError as error:
            raise DnsPortError(
                f"mesh DNS server: cannot listen on {dns.host}:{dns.port} ({error.strerror}); "
                "choose another --dns-port, or 0 to turn DNS off"
            ) from None
        forwarding = ", ".join(f"{u.host}:{u.port}" for u in self.dns.upstreams) or "off"
        log.info(
            "mesh DNS on %s:%d (UDP, TCP); VIPs from %s; forwarding to %s",
            dns.host,
            self.dns_port,
            dns.vip_range,
            forwarding,
        )

    async def _stop_xds(self) -> None:
        if self._revisions_task is not None:
            self._revisions_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._revisions_task
        if self.workers is not None:
            await self.workers.stop()
        if self.serving is not None:
            await self.serving.stop()

    def proxy_status(
        self, *, mesh: str | None = None, name: str | None = None
    ) -> list[dict[str, Any]]:
        """Status JSON of the connected proxies (of ``mesh``, named ``name``, if given): on a
        shared store, those of every replica of the fleet, each with its ``replica``."""
        return self.proxies.statuses(mesh=mesh, name=name)

    @asynccontextmanager
    async def _lifespan(self, _: Starlette) -> AsyncIterator[None]:
        for hook in self.startup:
            await hook()
        # Everything built so far lives as long as the process: keep it out of the collector's
        # way, and collect at idle moments of the xDS server (when this process serves it).
        serving = self.serving
        pacing = asyncio.create_task(
            gc_pacing.pace(lambda: serving.xds.activity if serving is not None else 0)
        )
        log.info(
            "meshplane API on %s://%s:%d (data: %s)",
            "https" if self.settings.tls is not None else "http",
            self.settings.api.host,
            self.settings.api.port,
            describe_url(self.settings.store.database_url)
            if self.settings.store.database_url
            else self.settings.store.data_dir,
        )
        self._log_auth()
        try:
            yield
        finally:
            pacing.cancel()
            for hook in reversed(self.shutdown):
                await hook()

    def _log_auth(self) -> None:
        auth = self.settings.auth
        if auth is None or not auth.required:
            log.info("API authentication: open to loopback callers (tokens are optional)")
            return
        log.info("API authentication: required (bearer tokens or SigV4)")
        if not self.store.api_tokens():
            log.warning(
                "no API token exists yet: stop the server and run: "
                "meshplane token create --data-dir %s --mesh '*' --role admin",
                self.settings.store.data_dir,
            )

    def close(self) -> None:
        self.store.close()
        if self._lock is not None:
            self._lock.close()


class _Server(uvicorn.Server):
    """uvicorn, but SIGTERM/SIGINT end ``serve()`` normally (exit code 0) instead of being
    re-raised after shutdown, so that the store closes and the process exits cleanly; and
    ``listening`` is set once the ports are open."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.listening.set()

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


StartedHook = Callable[["Application"], Awaitable[None]]
"""Called once the API and xDS ports listen, with the running application; when it raises,
the server stops and :func:`serve` raises that error."""


async def serve(
    settings: Settings,
    *,
    on_started: StartedHook | None = None,
    extra_ports: Sequence[tuple[str, int, str]] = (),
) -> None:
    """Run the control plane until SIGTERM/SIGINT (or until ``on_started`` fails): the
    public start-up of ``meshplane serve`` and ``meshplane demo``.  Every port it binds, and
    the ``extra_ports`` (host, port, remedy) of what ``on_started`` will start, is checked
    first (:func:`check_ports`)."""
    quiet_accept_errors(asyncio.get_running_loop())
    application = Application(settings)
    try:
        check_ports(
            [
                (settings.api.host, settings.api.port, "--api-port"),
                (settings.xds.host, settings.xds.port, "--xds-port"),
                *extra_ports,
            ]
        )
        config = uvicorn.Config(
            application.app,
            host=settings.api.host,
            port=settings.api.port,
            log_level=settings.log_level,
            access_log=False,
            lifespan="on",
            http=guarded_protocol(settings.api.limits),
            timeout_keep_alive=max(1, round(settings.api.limits.keep_alive_timeout)),
            loop="asyncio",  # grpc.aio runs in the same loop and needs the standard one
            ssl_certfile=str(settings.tls.cert_file) if settings.tls is not None else None,
            ssl_keyfile=str(settings.tls.key_file) if settings.tls is not None else None,
        )
        server = _Server(config)
        serving = asyncio.create_task(server.serve())
        try:
            if on_started is not None:
                listening = asyncio.create_task(server.listening.wait())
                await asyncio.wait({serving, listening}, return_when=asyncio.FIRST_COMPLETED)
                listening.cancel()
                if server.listening.is_set():
                    await on_started(application)
        except BaseException:
            server.should_exit = True
            await serving
            raise
        await serving
    finally:
        application.close()
