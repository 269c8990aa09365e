"""The SQLite file a durable ``default`` driver keeps its state in.

One file holds what the in-memory allocator needs to resume exactly: each
address space's rotation index (and the predefined list it indexes), each master
pool with its subpools, ``auto_release`` flag and serial cursor, and one row per
allocated address, so that the store itself makes a duplicate impossible.
Ordinals are integers, as 16-byte big-endian blobs from 2**63 up (SQLite
integers are 64-bit); both sort in numeric order, ints before blobs.

A side file ``PATH.lock`` carries an exclusive ``flock`` for as long as a
driver owns the state, and names its holder; SQLite's own locks do not keep a
second process from writing.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
import sys
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple, TypeAlias
from urllib.parse import quote

from ipamkit.errors import ForbiddenError, InvalidParameterError, UnavailableError

__all__ = [
    "APPLICATION_ID",
    "DURABILITIES",
    "SCHEMA_VERSION",
    "SavedMaster",
    "StateFileError",
    "StateLockedError",
    "StateWriteError",
    "Store",
    "decode_ordinal",
    "encode_ordinal",
    "open_read_only",
]

#: ``PRAGMA application_id`` of ipamkit's state files ("IPMK").
APPLICATION_ID = 0x49504D4B
#: The schema this release writes; a file of a newer one is refused, never touched.
SCHEMA_VERSION = 1
#: The ``durability`` option's values and the ``synchronous`` setting each gives.
#: In WAL mode FULL syncs every commit; NORMAL survives a crash of the process but
#: may lose the last commits on power loss, for several times the speed.
DURABILITIES = {"full": "FULL", "relaxed": "NORMAL"}

_HEADER = b"SQLite format 3\x00"
_SCHEMA = (
    # start: Docker's predefinedStartIndex into the list ``predefined`` spells.
    "CREATE TABLE spaces (name TEXT PRIMARY KEY, start INTEGER NOT NULL,"
    " predefined TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE masters (id INTEGER PRIMARY KEY, space TEXT NOT NULL, cidr TEXT NOT NULL,"
    " auto_release INTEGER NOT NULL, cursor NOT NULL, UNIQUE (space, cidr))",
    "CREATE TABLE subpools (master INTEGER NOT NULL, prefix TEXT NOT NULL,"
    " PRIMARY KEY (master, prefix)) WITHOUT ROWID",
    "CREATE TABLE addresses (master INTEGER NOT NULL, ordinal NOT NULL,"
    " PRIMARY KEY (master, ordinal)) WITHOUT ROWID",
)
_TABLES = {statement.split()[2] for statement in _SCHEMA}
_INT64 = 1 << 63

#: A stored ordinal: an int below 2**63, else 16 bytes big-endian.
Stored: TypeAlias = "int | bytes"


class StateLockedError(ForbiddenError):
    """The state file is owned by another driver, in this process or another."""


class StateFileError(InvalidParameterError):
    """The state file is not ipamkit's, of a newer schema, corrupt or unreadable."""


class StateWriteError(UnavailableError):
    """A change could not be written to the state file; nothing changed."""


class SavedMaster(NamedTuple):
    """A master pool as the file holds it."""

    row: int
    space: str
    cidr: str
    auto_release: bool
    cursor: int
    subpools: list[str]
    #: Allocated ordinals, ascending.
    ordinals: list[int]


def encode_ordinal(ordinal: int) -> Stored:
    """Return ``ordinal`` as the file stores it."""
    return ordinal if ordinal < _INT64 else ordinal.to_bytes(16, "big")


def decode_ordinal(value: Stored) -> int:
    """Return the ordinal the file stores as ``value``."""
    return value if type(value) is int else int.from_bytes(value, "big")  # type: ignore[arg-type]


def _uri(path: str, mode: str) -> str:
    return f"file:{quote(os.path.abspath(path))}?mode={mode}"


def _check(db: sqlite3.Connection, path: str) -> bool:
    """Check that ``db`` is an intact ipamkit state of a known schema; tell if it is empty."""
    try:
        application_id, version = (
            db.execute("PRAGMA application_id").fetchone()[0],
            db.execute("PRAGMA user_version").fetchone()[0],
        )
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_schema")}
        if application_id == 0 and version == 0 and not tables:
            return True
        if application_id != APPLICATION_ID:
            raise StateFileError(f"{path} is an SQLite database, but not an ipamkit state file")
        if version > SCHEMA_VERSION:
            raise StateFileError(
                f"state file {path} has schema version {version}, newer than this ipamkit's "
                f"({SCHEMA_VERSION}); upgrade ipamkit to use it"
            )
        missing = sorted(_TABLES - tables)
        if missing:
            raise StateFileError(f"state file {path} is incomplete: no table {', '.join(missing)}")
        problems = [row[0] for row in db.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        raise StateFileError(f"state file {path} cannot be read: {exc}") from None
    if problems != ["ok"]:
        raise StateFileError(f"state file {path} is corrupt: {'; '.join(problems[:3])}")
    return False


def _check_header(path: str) -> None:
    # Before SQLite opens the file: it must not keep a descriptor of ours open
    # (closing one drops every POSIX lock the process holds on the file).
    try:
        with open(path, "rb") as file:
            header = file.read(len(_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StateFileError(f"state file {path} cannot be read: {exc}") from None
    if header and header != _HEADER:
        raise StateFileError(f"{path} is not an ipamkit state file (not an SQLite database)")


def open_read_only(path: str) -> sqlite3.Connection:
    """Open an existing state for reading only, whether or not its owner runs.

    Nothing is written to the database; with a running owner, reading takes
    SQLite's shared-memory read marks, as every reader does.
    """
    if not os.path.isfile(path):
        raise StateFileError(f"state file {path} does not exist")
    _check_header(path)
    # Without a write-ahead log the file holds everything and no owner runs (the
    # last connection removes the log): read it as immutable, so that SQLite
    # creates no -wal and -shm files, which could be left owned by another user.
    mode = "ro" if os.path.exists(f"{path}-wal") else "ro&immutable=1"
    try:
        db = sqlite3.connect(_uri(path, mode), uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise StateFileError(f"state file {path} cannot be opened: {exc}") from None
    try:
        if _check(db, path):
            raise StateFileError(f"{path} is an empty SQLite database, not an ipamkit state file")
    except BaseException:
        db.close()
        raise
    return db


class _Holder:
    """The exclusive lock on ``PATH.lock``, with its holder recorded inside."""

    def __init__(self, path: str) -> None:
        self.path = f"{path}.lock"
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StateFileError(f"cannot open the lock file {self.path}: {exc}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._recorded()
            os.close(self._fd)
            raise StateLockedError(
                f"state file {path} is in use by {holder}; one process owns a state file at a time"
            ) from None
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(sys.argv) or sys.executable,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(record).encode() + b"\n", 0)

    def _recorded(self) -> str:
        assert self._fd is not None
        try:
            record = json.loads(os.pread(self._fd, 4096, 0))
            return (
                f"pid {record['pid']} on host {record['host']} since {record['since']} "
                f"({record['command']})"
            )
        except (ValueError, KeyError, TypeError):  # being written, or not ours
            return "another driver (holder not recorded yet)"

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # drops the flock
            self._fd = None


def _close(db: sqlite3.Connection, holder: _Holder) -> None:
    db.close()
    holder.release()


class Store:
    """The state file of one durable driver, owned for as long as it is open.

    Each change is one ``BEGIN IMMEDIATE`` transaction (see :meth:`transaction`);
    the write methods run inside one.
    """

    def __init__(self, path: str, durability: str = "full") -> None:
        if durability not in DURABILITIES:
            raise InvalidParameterError(
                f"durability must be one of {', '.join(DURABILITIES)}, not {durability!r}"
            )
        self.path = path
        self._holder = _Holder(path)
        try:
            _check_header(path)
            self._db = sqlite3.connect(
                _uri(path, "rwc"), uri=True, isolation_level=None, check_same_thread=False
            )
        except BaseException as exc:
            self._holder.release()
            if isinstance(exc, sqlite3.Error):
                raise StateFileError(f"state file {path} cannot be opened: {exc}") from None
            raise
        # A driver dropped without close() gives the file up when it is collected.
        self._closer = weakref.finalize(self, _close, self._db, self._holder)
        try:
            self._setup(durability)
        except BaseException:
            self.close()
            raise

    def _setup(self, durability: str) -> None:
        db = self._db
        empty = _check(db, self.path)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {DURABILITIES[durability]}")
            db.execute("PRAGMA busy_timeout = 5000")  # a reader may hold a checkpoint back
            #: Whether the file held no state yet (it does now).
            self.created = empty
            if empty:
                with self.transaction():
                    for statement in _SCHEMA:
                        db.execute(statement)
                    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StateFileError(f"state file {self.path} cannot be set up: {exc}") from None

    def close(self) -> None:
        """Close the file and give up its ownership; idempotent."""
        self._closer()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the body as one durable transaction; any SQLite failure rolls it back.

        Raises :class:`StateWriteError` for a failure of SQLite's.
        """
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StateWriteError(
                f"could not write the state file {self.path} ({exc}); nothing changed"
            ) from exc

    # -- reading, at start-up -----------------------------------------------------

    def load(self) -> tuple[dict[str, tuple[int, str]], list[SavedMaster]]:
        """Return the saved address spaces (rotation index, list) and master pools."""
        try:
            rows = self._db.execute("SELECT name, start, predefined FROM spaces")
            return {name: (start, text) for name, start, text in rows}, self._masters()
        except sqlite3.Error as exc:
            raise StateFileError(f"state file {self.path} cannot be read: {exc}") from None

    def _masters(self) -> list[SavedMaster]:
        db = self._db
        subpools: dict[int, list[str]] = {}
        for row, prefix in db.execute("SELECT master, prefix FROM subpools"):
            subpools.setdefault(row, []).append(prefix)
        ordinals: dict[int, list[int]] = {}
        rows = db.execute("SELECT master, ordinal FROM addresses ORDER BY master, ordinal")
        for row, stored in rows:
            found = ordinals.get(row)
            if found is None:
                found = ordinals[row] = []
            found.append(stored if type(stored) is int else decode_ordinal(stored))
        masters = [
            SavedMaster(
                row,
                space,
                cidr,
                bool(auto_release),
                decode_ordinal(cursor),
                subpools.pop(row, []),
                ordinals.pop(row, []),
            )
            for row, space, cidr, auto_release, cursor in db.execute(
                "SELECT id, space, cidr, auto_release, cursor FROM masters ORDER BY id"
            )
        ]
        if subpools or ordinals:
            raise StateFileError(
                f"state file {self.path} is inconsistent: subpools or addresses of master "
                f"rows that do not exist ({sorted(set(subpools) | set(ordinals))[:5]})"
            )
        return masters

    # -- writing, inside a transaction ----------------------------------------------

    def set_space(self, name: str, start: int, predefined: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO spaces (name, start, predefined) VALUES (?, ?, ?)",
            (name, start, predefined),
        )

    def set_start(self, name: str, start: int) -> None:
        self._db.execute("UPDATE spaces SET start = ? WHERE name = ?", (start, name))

    def add_master(self, space: str, cidr: str, auto_release: bool) -> int:
        """Save a master pool; return its row."""
        cursor = self._db.execute(
            "INSERT INTO masters (space, cidr, auto_release, cursor) VALUES (?, ?, ?, 0)",
            (space, cidr, auto_release),
        )
        row = cursor.lastrowid
        assert row is not None  # an INSERT into a rowid table always has one
        return row

    def drop_master(self, row: int) -> None:
        db = self._db
        db.execute("DELETE FROM addresses WHERE master = ?", (row,))
        db.execute("DELETE FROM subpools WHERE master = ?", (row,))
        db.execute("DELETE FROM masters WHERE id = ?", (row,))

    def set_auto_release(self, row: int) -> None:
        self._db.execute("UPDATE masters SET auto_release = 1 WHERE id = ?", (row,))

    def add_subpool(self, row: int, prefix: str) -> None:
        self._db.execute("INSERT INTO subpools (master, prefix) VALUES (?, ?)", (row, prefix))

    def remove_subpool(self, row: int, prefix: str) -> None:
        self._db.execute("DELETE FROM subpools WHERE master = ? AND prefix = ?", (row, prefix))

    def add_address(self, row: int, ordinal: int, cursor: int | None) -> None:
        """Save an allocated ordinal, and the serial cursor when it moved."""
        db = self._db
        db.execute(
            "INSERT INTO addresses (master, ordinal) VALUES (?, ?)", (row, encode_ordinal(ordinal))
        )
        if cursor is not None:
            db.execute("UPDATE masters SET cursor = ? WHERE id = ?", (encode_ordinal(cursor), row))

    def remove_address(self, row: int, ordinal: int) -> None:
        self._db.execute(
            "DELETE FROM addresses WHERE master = ? AND ordinal = ?", (row, encode_ordinal(ordinal))
        )
