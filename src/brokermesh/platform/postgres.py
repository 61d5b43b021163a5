"""A local PostgreSQL cluster for development: initdb once, then pg_ctl start and stop.

The cluster is a development convenience and trusts every connection from the
loopback interface (no passwords, no Unix socket). Deployments on Kubernetes
use CloudNativePG, whose generated secrets carry the credentials instead.

PostgreSQL refuses to run as root, so when this process is root every
PostgreSQL program runs as an unprivileged account (``postgres``, else
``nobody``), which then owns the data directory. The binaries come from the system installation
(``/usr/lib/postgresql/<version>/bin`` or ``pg_ctl`` on ``PATH``) and, where
there is none, from the ``pgserver`` wheel, which bundles them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from brokermesh.platform import PlatformError
from brokermesh.platform.layout import DATABASE, HOST, OWNER_ROLE, POSTGRES_PORT, postgres_dsn

_LOGGER = logging.getLogger(__name__)

#: Unprivileged accounts PostgreSQL runs as when this process is root, in order of preference.
SERVICE_USERS = ("postgres", "nobody")
#: Written into the data directory at every start, so a new port takes effect.
SETTINGS_FILE = "brokermesh.conf"
_SYSTEM_BIN_GLOB = "/usr/lib/postgresql/*/bin"
#: pg_ctl status exit code for "no server running".
_PG_CTL_NOT_RUNNING = 3


def find_bin_dir() -> Path:
    """The directory holding initdb and pg_ctl: the system's, else pgserver's bundled copy."""
    # The newest system installation wins; Debian keeps each major version apart.
    candidates = sorted(
        Path("/").glob(_SYSTEM_BIN_GLOB.lstrip("/")),
        key=lambda p: _version_key(p.parent.name),
        reverse=True,
    )
    for candidate in candidates:
        if (candidate / "pg_ctl").is_file():
            return candidate
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    bundled = bundled_bin_dir()
    if bundled is not None:
        return bundled
    raise PlatformError(
        "no PostgreSQL binaries: install PostgreSQL (initdb, pg_ctl), or reinstall the "
        "pinned dependencies (`make venv`), which bring pgserver's bundled copy"
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def bundled_bin_dir() -> Path | None:
    """The PostgreSQL binaries inside the pgserver wheel (a pinned dependency), if present."""
    # Located, not imported: importing pgserver sets up runtime directories we do not use.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return bin_dir if (bin_dir / "pg_ctl").is_file() else None


@dataclass(slots=True)
class LocalPostgres:
    """One PostgreSQL cluster in ``data_dir``, listening on ``host:port``."""

    data_dir: Path
    port: int = POSTGRES_PORT
    host: str = HOST
    bin_dir: Path | None = None
    #: Server log; defaults to ``<data_dir>.log`` beside the data directory.
    log_file: Path | None = None
    #: Whether :meth:`start` launched the server (rather than finding it running).
    started_here: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        if self.log_file is None:
            self.log_file = self.data_dir.with_name(f"{self.data_dir.name}.log")

    @property
    def owner_dsn(self) -> str:
        return postgres_dsn(OWNER_ROLE, self.port, host=self.host)

    def dsn(self, role: str, database: str = DATABASE) -> str:
        return postgres_dsn(role, self.port, host=self.host, database=database)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def init(self) -> None:
        """Create the cluster with superuser ``brokermesh`` and loopback-only trust.

        initdb works in a staging directory renamed into place at the end, so an
        interrupted first start leaves no half-made cluster behind.
        """
        staging = self.data_dir.with_name(f"{self.data_dir.name}.initdb")
        shutil.rmtree(staging, ignore_errors=True)
        self._prepare_dir(staging, mode=0o700)
        self._run(
            "initdb",
            "-D",
            str(staging),
            "-U",
            OWNER_ROLE,
            "--no-locale",
            "--encoding=UTF8",
            "--auth=trust",
            timeout_s=180,
        )
        # Replace initdb's rules: no local-socket entries at all, trust on loopback only.
        self._write_owned(
            staging / "pg_hba.conf",
            (
                "# brokermesh local development platform: trust on loopback only.\n"
                "# Kubernetes deployments use CloudNativePG and its generated credentials.\n"
                "host all all 127.0.0.1/32 trust\n"
                "host all all ::1/128 trust\n"
            ),
        )
        with (staging / "postgresql.conf").open("a") as conf:
            conf.write(f"\ninclude_if_exists = '{SETTINGS_FILE}'\n")
        if self.data_dir.is_dir() and not any(self.data_dir.iterdir()):
            self.data_dir.rmdir()
        staging.rename(self.data_dir)
        _LOGGER.info("initialized PostgreSQL cluster in %s", self.data_dir)

    def postmaster_pid(self) -> int | None:
        """The postmaster's pid from ``postmaster.pid``, if the file exists."""
        lines = self._pid_file_lines()
        return int(lines[0]) if lines else None

    def running_port(self) -> int | None:
        """The port the running postmaster listens on, from ``postmaster.pid``."""
        lines = self._pid_file_lines()
        return int(lines[3]) if len(lines) > 3 and lines[3].strip() else None

    def is_running(self) -> bool:
        if not self.initialized():
            return False
        result = self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False)
        return result.returncode == 0

    def start(self, *, timeout_s: float = 60.0) -> bool:
        """Start the server (initializing it first); reuse it when running. True if started."""
        if not self.initialized():
            self.init()
        if self.is_running():
            running = self.running_port()
            if running != self.port:
                raise PlatformError(
                    f"PostgreSQL in {self.data_dir} already runs on port {running}, "
                    f"not {self.port}; stop it or use the matching port offset"
                )
            _LOGGER.info("PostgreSQL already running on %s; reusing it", self.address)
            return False

        self._write_settings()
        assert self.log_file is not None
        self._prepare_file(self.log_file)
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(int(timeout_s)),
            timeout_s=timeout_s + 10,
        )
        self.started_here = True
        _LOGGER.info("PostgreSQL listening on %s (data %s)", self.address, self.data_dir)
        return True

    def stop(self, *, timeout_s: float = 60.0) -> None:
        """Stop with ``-m fast`` (roll back sessions, checkpoint); escalate to immediate."""
        if not self.is_running():
            return
        result = self._run(
            "pg_ctl",
            "stop",
            "-D",
            str(self.data_dir),
            "-m",
            "fast",
            "-w",
            "-t",
            str(int(timeout_s)),
            check=False,
            timeout_s=timeout_s + 10,
        )
        if result.returncode != 0 and self.is_running():
            _LOGGER.warning(
                "fast shutdown failed (%s); stopping immediately", result.stderr.strip()
            )
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-w")
        self.started_here = False
        _LOGGER.info("PostgreSQL on %s stopped", self.address)

    async def ensure_database(self, database: str = DATABASE) -> None:
        """Create ``database`` if it does not exist yet (CREATE DATABASE cannot run in a
        transaction, so it is not part of the migrations)."""
        conn = await asyncpg.connect(self.dsn(OWNER_ROLE, "postgres"), timeout=10)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
            if not exists:
                quoted = database.replace('"', '""')
                await conn.execute(f'CREATE DATABASE "{quoted}"')
                _LOGGER.info("created database %s", database)
        finally:
            await conn.close()

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server log, for error messages."""
        assert self.log_file is not None
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _write_settings(self) -> None:
        # Durability is not negotiable even locally: the event store is the system of record.
        self._write_owned(
            self.data_dir / SETTINGS_FILE,
            (
                "# Written by brokermesh at every start; edits are overwritten.\n"
                f"listen_addresses = '{self.host}'\n"
                f"port = {self.port}\n"
                "unix_socket_directories = ''\n"
                "fsync = on\n"
                "synchronous_commit = on\n"
                "full_page_writes = on\n"
            ),
        )

    def _pid_file_lines(self) -> list[str]:
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return []

    def _run(
        self, program: str, *args: str, check: bool = True, timeout_s: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program, as the service user when this process is root."""
        bin_dir = self.bin_dir or find_bin_dir()
        command = [str(bin_dir / program), *args]
        # PG* variables of the caller's shell would silently redirect the tools.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        owner = _service_account()
        if owner is not None:
            env["HOME"] = owner.pw_dir
        # cwd "/" because the service user may not be allowed into the caller's directory;
        # no supplementary groups, so nothing of root's survives the switch.
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
            timeout=timeout_s,
            check=False,
            user=owner.pw_uid if owner else None,
            group=owner.pw_gid if owner else None,
            extra_groups=[] if owner else None,
        )
        if check and result.returncode != 0:
            raise PlatformError(
                f"{program} {' '.join(args[:1])} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n{self.log_tail()}"
            )
        return result

    def _prepare_dir(self, path: Path, *, mode: int) -> None:
        """Create ``path`` owned by the service user, and make its parents traversable."""
        path.mkdir(parents=True, exist_ok=True)
        owner = _service_account()
        if owner is None:
            path.chmod(mode)
            return
        os.chown(path, owner.pw_uid, owner.pw_gid)
        path.chmod(mode)
        _make_traversable(path.parent)

    def _prepare_file(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
        owner = _service_account()
        if owner is not None:
            os.chown(path, owner.pw_uid, owner.pw_gid)
            _make_traversable(path.parent)

    def _write_owned(self, path: Path, text: str) -> None:
        path.write_text(text)
        owner = _service_account()
        if owner is not None:
            os.chown(path, owner.pw_uid, owner.pw_gid)
        path.chmod(0o600)


def _service_account() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as when this process is root, else None (ourselves).

    ``postgres`` where the system has one, else ``nobody``: any unprivileged account will
    do, since the account owns nothing but the platform's own data directory.
    """
    if os.geteuid() != 0:
        return None
    for name in SERVICE_USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PlatformError(
        f"running as root, but none of the accounts {', '.join(SERVICE_USERS)} exists to run "
        f"PostgreSQL as; create one (useradd --system postgres) or run as an ordinary user"
    )


def _make_traversable(directory: Path) -> None:
    """Add o+x to ``directory`` and its parents where missing, so the service user reaches
    the data directory; nothing becomes listable or writable by others."""
    for current in (directory, *directory.parents):
        mode = current.stat().st_mode
        if not mode & stat.S_IXOTH:
            current.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
            _LOGGER.info("made %s traversable for PostgreSQL's service account", current)
