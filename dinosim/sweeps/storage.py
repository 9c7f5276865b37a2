"""Where a sweep's Optuna study lives: a journal file in the sweep folder, or a database shared by many machines.

``storage_url(sweep_dir, None)`` is ``journal:<sweep_dir>/study.journal``. Any other URL is an SQLAlchemy database
URL (``postgresql://user:password@host:5432/db``, ``sqlite:///path.db``). ``make_storage`` opens it and turns every
way that can fail -- an unparsable URL, a missing database driver, a server that does not answer -- into one
ConfigError line, raised before any trial starts. Connecting gives up after ``CONNECT_TIMEOUT`` seconds.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any, Iterator, Optional

from dinosim.errors import ConfigError

STUDY_FILE = "study.journal"
PARAMS_ATTR = "params"  # trial user attribute: the values the trial's program received (set by the engine)
OVER_CAP = "over_cap"  # user attr of a trial that found run_cap reached by earlier-numbered trials; it never ran
CONNECT_TIMEOUT = 10  # seconds; a sweep must not hang on a server that does not answer
DRIVER_HINTS = {
    "postgresql": "pip install 'dinosim[postgres]' (psycopg)",
    "mysql": "pip install mysqlclient (or PyMySQL with mysql+pymysql://)",
}
ENGINE_KWARGS = {  # per database backend: never wait forever
    "postgresql": {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}},
    "mysql": {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}},
    "sqlite": {"connect_args": {"timeout": 60}},  # seconds a writer waits for another engine's lock
}


def trial_params(trial: Any) -> dict[str, Any]:
    """The values a trial's program received (the engine stores them; Optuna params as a fallback)."""
    return dict(trial.user_attrs.get(PARAMS_ATTR) or trial.params)


def storage_url(sweep_dir: Path, storage: Optional[str]) -> str:
    return storage or f"journal:{sweep_dir / STUDY_FILE}"


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (in ``user:PASSWORD@host`` and in a ``password=`` query
    parameter), for everything that prints or records a storage URL. Standard library only; a malformed URL is
    redacted just the same."""
    head, sep, rest = url.partition("://")
    if sep:
        netloc, slash, tail = rest.partition("/")
        userinfo, at, host = netloc.rpartition("@")
        if at and ":" in userinfo:
            rest = f"{userinfo.split(':', 1)[0]}:***@{host}{slash}{tail}"
        url = f"{head}{sep}{rest}"
    return re.sub(r"(?i)((?:^|[?&;\s])password=)[^&;\s]*", r"\1***", url)


def _password(url: str) -> Optional[str]:
    """The password in ``url`` (to scrub it from a driver's error message), or None."""
    netloc = url.partition("://")[2].partition("/")[0]
    userinfo, at, _ = netloc.rpartition("@")
    return userinfo.split(":", 1)[1] if at and ":" in userinfo else None


def _backend(url: str) -> str:
    """The database backend of an SQLAlchemy URL ("postgresql", "sqlite", ...); ConfigError when it is not one."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).get_backend_name()
    except Exception:
        raise ConfigError(f"--storage {redact(url)!r}: not a database URL; use e.g. postgresql://user@host/db, "
                          f"sqlite:///path/study.db or journal:path/study.journal") from None


def make_storage(url: str) -> Any:
    """An Optuna storage: ``journal:PATH`` -> JournalFileBackend, anything else -> RDBStorage at that URL.

    RDB studies are shared between machines, so their trials send heartbeats: a trial whose engine died (no beat for
    ``grace_period`` s) is failed by the next engine that asks for a trial and queued again once.
    Raises ConfigError (one line, password hidden) when the URL is malformed, its driver is missing, or the
    database cannot be reached.
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if url.startswith("journal:"):
        return JournalStorage(JournalFileBackend(url[len("journal:") :]))
    backend = _backend(url)
    import warnings

    with warnings.catch_warnings():  # heartbeats are flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # optuna >= 4.9
            retry = {"heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
        else:
            retry = {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=1)}
        try:
            return _open_rdb(url, ENGINE_KWARGS.get(backend, {}), retry)
        except ImportError:
            hint = DRIVER_HINTS.get(backend, "install its SQLAlchemy driver")
            raise ConfigError(f"--storage {redact(url)}: the database driver for {backend} is not installed; "
                              f"{hint}") from None
        except Exception as exc:  # sqlalchemy.exc.OperationalError and friends: server down, bad credentials, ...
            first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            secret = _password(url)
            first = first.replace(secret, "***") if secret else first
            raise ConfigError(f"--storage {redact(url)}: cannot open the study database: {first}") from None


def _open_rdb(url: str, engine_kwargs: dict[str, Any], retry: dict[str, Any], attempts: int = 5) -> Any:
    """RDBStorage at URL. Engines started together on an empty database race to create Optuna's tables; the loser
    gets an IntegrityError/ProgrammingError from the schema DDL and simply tries again (the tables exist then)."""
    import random
    import time

    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=60,
                                              grace_period=300, **retry)
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 + random.random())


@contextlib.contextmanager
def damaged_study_is_config_error(url: str) -> Iterator[None]:
    """Reading a study: a journal file damaged by something other than Optuna (truncated, garbled, not UTF-8)
    becomes one ConfigError line naming it instead of a traceback from deep inside Optuna's replay."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        where = url[len("journal:"):] if url.startswith("journal:") else redact(url)
        raise ConfigError(f"{where}: the study cannot be read; it is damaged ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:160] if str(exc) else ''})") from None
