"""Loaded at start-up by every Python of the lab venv (a .pth file): SQLite transactions take
the write lock when they begin.

The lab runs every OpenStack database on SQLite, shared by several processes (nova-api,
conductor, nova-manage, ...). oslo.db opens each transaction with a plain (deferred) BEGIN, so a
transaction that reads and then writes must upgrade its lock, and when another process wrote in
between SQLite answers "database is locked" at once, without waiting (seen in the lab: a refresh
and cinder-volume's start-up failed that way). With BEGIN IMMEDIATE a transaction waits for the
lock up front (the URL's timeout=30), so writers queue instead of failing. Lab only.
"""
import sqlite3
import sqlite3.dbapi2


class _Cursor(sqlite3.Cursor):
    def execute(self, sql, *args):
        if isinstance(sql, str) and sql.strip().upper() == "BEGIN":
            sql = "BEGIN IMMEDIATE"
        return super().execute(sql, *args)


class _Connection(sqlite3.Connection):
    def cursor(self, factory=_Cursor):
        return super().cursor(factory)

    def execute(self, sql, *args):
        return self.cursor().execute(sql, *args)


_connect = sqlite3.dbapi2.connect


def connect(*args, **kwargs):
    kwargs.setdefault("factory", _Connection)
    return _connect(*args, **kwargs)


sqlite3.connect = sqlite3.dbapi2.connect = connect
