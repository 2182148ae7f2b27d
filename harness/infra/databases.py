"""Database URLs that Optuna and MLflow share: drivers, masked passwords, locks.

Several workers, on one machine or many, may open one database at the same instant. Optuna and
MLflow create their schema on first connect and race when two do it at once, and a study's
budget and parent run must be created once. `exclusive` serialises such steps with a lock held
by the database server itself (a PostgreSQL advisory lock, released when its connection ends,
so a killed worker never leaves it held), or by a file lock beside a SQLite file.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlsplit

import filelock
import sqlalchemy
from sqlalchemy.pool import NullPool

from harness.config.errors import UserError

DRIVER_PACKAGES = {
    "psycopg": "-e '.[postgres]'  (or: pip install 'psycopg[binary]')",
    "psycopg2": "psycopg2-binary",
    "pymysql": "PyMySQL",
    "MySQLdb": "mysqlclient",
}
SERVER_SCHEMES = ("http", "https", "databricks")  # tracking URIs that name a server, not a store
# How long a store held by another process's write is waited for before saying so: a harness
# worker's own writes hold SQLite's lock for milliseconds.
LOCK_WAIT_SECONDS = 10
CONNECT_TIMEOUT_SECONDS = 10  # an unroutable host would otherwise wait for the OS (minutes)
JOURNAL_PREFIX = "journal:"  # an Optuna storage that is a journal file: journal:/shared/optuna.log


class StoreError(UserError, ValueError):
    """A store that cannot be used (no driver, unwritable, a file where a folder should be); the
    message shows its URL with the password masked."""


# scheme://user:PASSWORD@...: the password runs to the first @, as SQLAlchemy reads it. Not
# urlsplit, which ends the address at / or #, and SQLAlchemy takes those in a password unencoded.
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][\w+.-]*://[^:/@]*):(?P<password>[^@]*)@")


def password(url: str) -> str | None:
    """The password written in `url` (as written, percent-encoded or not), or None."""
    found = _USERINFO.match(url or "")
    return found["password"] if found and found["password"] else None


def mask(url: str) -> str:
    """`url` with its password, if it has one, replaced by ***."""
    if password(url) is None:
        return url
    if is_database_url(url):
        with contextlib.suppress(Exception):  # malformed: masked by the pattern below
            return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    return _USERINFO.sub(r"\g<head>:***@", url, count=1)


def without_credentials(url: str) -> str:
    """`url` without its user and password (`scheme://host...`)."""
    found = _USERINFO.match(url or "")
    return url if found is None else url[: url.index("://") + 3] + url[found.end() :]


def redact(text: str, *urls: str | None) -> str:
    """`text` with each URL of `urls` masked and its password (raw or decoded) replaced by ***."""
    for url in urls:
        secret = password(url) if url else None
        if secret:
            text = text.replace(url, mask(url))
            for form in sorted({secret, unquote(secret)}, key=len, reverse=True):
                text = text.replace(form, "***")
    return text


def is_database_url(uri: str) -> bool:
    """A SQLAlchemy URL (`sqlite:///`, `postgresql://`, `mysql+pymysql://` ...)."""
    scheme = urlsplit(uri).scheme
    return bool(scheme) and scheme.split("+")[0] not in (*SERVER_SCHEMES, "file")


def check_driver(url: str, what: str) -> None:
    """Fail in one line naming the package to install when `url`'s database driver is missing."""
    try:
        dialect = sqlalchemy.engine.make_url(url).get_dialect()
    except Exception as err:  # a malformed URL or an unknown dialect: SQLAlchemy's message says
        raise StoreError(f"{what} {mask(url)!r} is not a usable database URL: {err}") from None
    try:
        dialect.import_dbapi()
    except ImportError as err:
        module = (err.name or "").split(".")[0] or "its driver"
        package = DRIVER_PACKAGES.get(module, module)
        raise StoreError(
            f"{what} {mask(url)!r} needs the database driver {module!r}: pip install {package}"
        ) from None


def sqlite_tables(url: str, path: Path, what: str, *, writable: bool = True) -> set[str]:
    """The tables of the SQLite database `path` (none when it does not exist yet), after checking
    that it is a SQLite database and, if `writable`, that no other process holds its write lock.
    Reads only: a file that is not a store is never changed."""
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    try:
        conn = sqlite3.connect(path, timeout=LOCK_WAIT_SECONDS, isolation_level=None)
        try:
            query = "SELECT name FROM sqlite_master WHERE type='table'"
            tables = {row[0] for row in conn.execute(query)}
            if writable:  # takes the write lock and gives it back, writing nothing
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
        finally:
            conn.close()
    except sqlite3.DatabaseError as err:
        if "locked" in str(err):
            raise StoreError(
                f"{what} {mask(url)}: {path} is locked by another process (waited "
                f"{LOCK_WAIT_SECONDS} s): end the process holding it, or pass another one"
            ) from None
        raise StoreError(
            f"{what} {mask(url)}: {path} is not a readable SQLite database ({err}): move it "
            "aside to start a new store, or pass another one"
        ) from None
    return tables


def check_reachable(url: str, what: str) -> None:
    """Fail in one line, naming the server, unless the database at `url` answers a connect."""
    engine = sqlalchemy.create_engine(url, poolclass=NullPool, connect_args=connect_timeout(url))
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.DBAPIError as err:
        lines = [line.strip() for line in str(err.orig).splitlines() if line.strip()]
        reason = redact(lines[0] if lines else type(err.orig).__name__, url)
        raise StoreError(
            f"{what} {mask(url)}: cannot connect ({reason}); is the database server running "
            "and reachable from here?"
        ) from None
    finally:
        engine.dispose()


def connect_timeout(url: str) -> dict:
    """The driver's connect timeout for a server database (PostgreSQL, MySQL), else nothing."""
    backend = sqlalchemy.engine.make_url(url).get_backend_name()
    return (
        {"connect_timeout": CONNECT_TIMEOUT_SECONDS} if backend in ("postgresql", "mysql") else {}
    )


def journal_path(url: str) -> Path | None:
    """The file of an Optuna journal storage `journal:PATH`, None for any other storage."""
    return Path(url.removeprefix(JOURNAL_PREFIX)) if url.startswith(JOURNAL_PREFIX) else None


@contextlib.contextmanager
def exclusive(url: str, name: str):
    """Hold the lock `name` for the block: in the PostgreSQL server at `url` (against every
    machine), or in a file beside a SQLite database or an Optuna journal (a journal's lock is
    shared by the machines that share its file system)."""
    journal = journal_path(url)
    if journal is not None:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        with filelock.FileLock(f"{journal.resolve()}.{digest}.lock"):
            yield
        return
    parsed = sqlalchemy.engine.make_url(url)
    backend = parsed.get_backend_name()
    database = Path(parsed.database or ".").resolve()
    on_disk = parsed.database not in (None, "", ":memory:") and database.parent.is_dir()
    if backend == "sqlite" and on_disk:  # (a missing folder: opening the database fails)
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        with filelock.FileLock(f"{database}.{digest}.lock"):
            yield
        return
    if backend != "postgresql":
        yield  # no lock for other databases: start one worker first, the others after it
        return
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    finally:
        engine.dispose()
