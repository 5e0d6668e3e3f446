"""Pool configuration: named pools of kernels, read from TOML or JSON and checked.

A server runs one or more *pools*, each with its own mode, backend, limits
and start-up code; clients choose one by name (``31415@host/big``). The
file format is documented in docs/configuration.md; this module turns a file
(or the command line's options) into :class:`PoolConfig` objects and says
exactly what is wrong with a file that is not right. It starts nothing.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .kernel import BACKENDS
from .launcher.spec import KernelSpec, RayOptions
from .users import BUILT_IN, ROLES, User

__all__ = ["ConfigError", "PoolConfig", "ServerConfig", "load_config"]

MODES = ("shared", "pool")
_USER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: A server's identity on a Ray cluster (it is part of its kept kernels' actor names).
SERVER_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: Where a pool's kernels run: this machine, or nodes of a Ray cluster.
PLACEMENTS = ("local", "ray")


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """One pool of kernels.

    Attributes:
        name: what clients ask for (``PORT@HOST/NAME``).
        mode: ``"shared"`` (one kernel, shared state) or ``"pool"`` (a kernel per link).
        backend: kernel backend (``"mathics"``).
        kernel_path: the kernel program, for backends that run one.
        min: kernels kept warm (pool mode).
        max: kernels at most (pool mode).
        wait: seconds a link waits for a kernel before it is refused (pool mode).
        keepalive: seconds a detached persistent kernel is kept for its client
            to come back (pool mode); 0 turns persistent kernels off.
        eval_timeout: seconds one evaluation may run; None for no limit.
        memory_mb: address-space limit per kernel; None for no limit.
        init: Wolfram Language code evaluated in every new kernel before use.
        max_queued: requests one link may have waiting; more are refused at once.
        placement: ``"local"`` (processes on this machine) or ``"ray"`` (actors
            on a Ray cluster); None follows the server: Ray with ``--ray``.
        ray: what each kernel books on Ray (``[pools.NAME.ray]``).
        sandbox: confine kernels by the operating system (``serve --sandbox``).
        cull_idle: seconds a client may send nothing before its kernel is ended
            (pool mode; 0 never). Persistent kernels follow their keep-alive instead.
        cull: what a culled client gets: ``"fresh"`` (its next request is told,
            then a fresh kernel serves it) or ``"close"`` (its link closes, reason culled).
    """

    name: str = "default"
    mode: str = "shared"
    backend: str = "mathics"
    kernel_path: str | None = None
    min: int = 1
    max: int = 4
    wait: float = 30.0
    keepalive: float = 0.0
    eval_timeout: float | None = None
    memory_mb: int | None = None
    init: str | None = None
    max_queued: int = 1000
    placement: str | None = None
    ray: RayOptions = RayOptions()
    sandbox: bool = False
    cull_idle: float = 0.0
    cull: str = "fresh"

    def placed(self, ray_address: str | None) -> str:
        """Where this pool's kernels run on a server started with ``ray_address``."""
        return self.placement or ("ray" if ray_address else "local")

    def spec(self, *, quit_allowed: str = "nobody") -> KernelSpec:
        """The kernel spec of this pool's kernels (``quit_allowed``: ``[access] quit``)."""
        return KernelSpec(
            self.backend, eval_timeout=self.eval_timeout, memory_mb=self.memory_mb,
            init=self.init, kernel_path=self.kernel_path, mode=self.mode,
            quit_allowed=quit_allowed, sandbox=self.sandbox,
        )


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Every pool of a server; ``default`` is the pool a client gets without asking."""

    pools: tuple[PoolConfig, ...] = field(default_factory=lambda: (PoolConfig(),))
    default: str = "default"
    #: who may stop the server: "admin", "anyone" or "nobody" (docs/protocol.md §8.8)
    stop_allowed: str = "admin"
    #: who may see its status: "admin" or "anyone"
    status_allowed: str = "admin"
    #: who may end a shared kernel with Quit[]: "nobody" or "anyone"
    quit_allowed: str = "nobody"
    #: the users of ``[access.users.NAME]``, each with a key file, a role and limits
    users: tuple[User, ...] = ()
    #: the server's identity on a Ray cluster: a server started again with the same
    #: one adopts the kernels kept for it; None: ``HOSTNAME-PORT`` (random with port 0)
    server_id: str | None = None

    def pool(self, name: str | None) -> PoolConfig:
        """The pool called ``name`` (the default pool for None or "").

        Raises:
            KeyError: no such pool.
        """
        wanted = name or self.default
        for pool in self.pools:
            if pool.name == wanted:
                return pool
        raise KeyError(wanted)


_TYPES: dict[str, tuple[type, ...]] = {
    "mode": (str,), "backend": (str,), "kernel_path": (str,), "min": (int,), "max": (int,),
    "wait": (int, float), "keepalive": (int, float), "eval_timeout": (int, float),
    "memory_mb": (int,), "init": (str,), "max_queued": (int,), "placement": (str,),
    "sandbox": (bool,), "cull_idle": (int, float), "cull": (str,),
}
_KEYS = tuple(f.name for f in fields(PoolConfig) if f.name != "name")


def check_pool(name: str, values: dict[str, Any], where: str = "pools") -> PoolConfig:
    """Build one :class:`PoolConfig` from raw values, or say precisely what is wrong.

    Raises:
        ConfigError: an unknown key, a wrong type or an impossible value.
    """
    at = f"{where}.{name}"
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ConfigError(f"{at}: a pool name uses letters, digits, '-' and '_' only")
    values = dict(values)
    ray_table = values.pop("ray", None)
    for key, value in values.items():
        if key not in _TYPES:
            known = ", ".join(_KEYS)
            raise ConfigError(f"{at}.{key} is not a pool setting; the settings are: {known}")
        if isinstance(value, bool) != (_TYPES[key] == (bool,)) or not isinstance(
            value, _TYPES[key]
        ):
            wanted = " or ".join(t.__name__ for t in _TYPES[key])
            raise ConfigError(f"{at}.{key} must be {wanted}, not {value!r}")
    if ray_table is not None:
        values["ray"] = _check_ray(f"{at}.ray", ray_table)
    pool = PoolConfig(name=name, **values)
    if pool.placement is not None and pool.placement not in PLACEMENTS:
        raise ConfigError(f"{at}.placement must be 'local' or 'ray', not {pool.placement!r}")
    if ray_table is not None and pool.placement == "local":
        raise ConfigError(f"{at}.ray is for placement = \"ray\"; this pool's placement is \"local\"")
    if pool.mode not in MODES:
        raise ConfigError(f"{at}.mode must be 'shared' or 'pool', not {pool.mode!r}")
    if pool.backend not in BACKENDS:
        raise ConfigError(
            f"{at}.backend must be one of {', '.join(sorted(BACKENDS))}, not {pool.backend!r}"
        )
    if pool.max < 1 or not 0 <= pool.min <= pool.max:
        raise ConfigError(f"{at}: need 0 <= min <= max and max >= 1 (min={pool.min}, max={pool.max})")
    for key in ("wait", "keepalive"):
        if getattr(pool, key) < 0:
            raise ConfigError(f"{at}.{key} must not be negative")
    if pool.eval_timeout is not None and pool.eval_timeout <= 0:
        raise ConfigError(f"{at}.eval_timeout must be positive (leave it out for no limit)")
    if pool.max_queued < 1:
        raise ConfigError(f"{at}.max_queued must be at least 1")
    if pool.memory_mb is not None and pool.memory_mb < 64:
        raise ConfigError(f"{at}.memory_mb below 64 leaves a kernel no room to start")
    if pool.sandbox and pool.placement == "ray":
        raise ConfigError(f"{at}.sandbox is for kernels on this machine; a pool placed on "
                          "Ray runs its kernels as Ray's workers, which the sandbox cannot confine")
    if pool.sandbox and pool.backend != "mathics":
        raise ConfigError(f"{at}.sandbox is for backend = \"mathics\"; the wolfram backend "
                          "runs a program of its own, which the sandbox forbids")
    if pool.kernel_path is not None and pool.backend != "wolfram":
        raise ConfigError(f"{at}.kernel_path is for backend = \"wolfram\"")
    if pool.cull_idle < 0:
        raise ConfigError(f"{at}.cull_idle must not be negative (0 never culls)")
    if pool.cull not in ("fresh", "close"):
        raise ConfigError(f"{at}.cull must be 'fresh' or 'close', not {pool.cull!r}")
    if pool.mode == "shared" and pool.cull_idle:
        raise ConfigError(f"{at}.cull_idle is for pool mode; a shared kernel serves everyone")
    if pool.mode == "shared" and pool.keepalive:
        raise ConfigError(f"{at}.keepalive is for pool mode; a shared kernel never goes away")
    return pool


_RAY_KEYS = ("num_cpus", "memory_mb", "resources", "namespace")


def _check_ray(at: str, table: Any) -> RayOptions:
    """Check a ``[pools.NAME.ray]`` table: what each kernel books on Ray."""
    if not isinstance(table, dict):
        raise ConfigError(f"{at} must be a table, e.g. [{at}] num_cpus = 1")
    for key in table:
        if key not in _RAY_KEYS:
            raise ConfigError(f"{at}.{key} is not a Ray setting; the settings are: "
                              + ", ".join(_RAY_KEYS))
    num_cpus = table.get("num_cpus", 1)
    if isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)) or num_cpus < 0:
        raise ConfigError(f"{at}.num_cpus must be a number of CPUs, 0 or more, not {num_cpus!r}")
    memory_mb = table.get("memory_mb")
    if memory_mb is not None and (isinstance(memory_mb, bool) or not isinstance(memory_mb, int)
                                  or memory_mb <= 0):
        raise ConfigError(f"{at}.memory_mb must be a positive whole number of MiB, not {memory_mb!r}")
    resources = table.get("resources", {})
    if not isinstance(resources, dict):
        raise ConfigError(f"{at}.resources must be a table of amounts, e.g. {{ gpu_node = 1 }}")
    pairs = []
    for resource, amount in sorted(resources.items()):
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount <= 0:
            raise ConfigError(f"{at}.resources.{resource} must be a positive amount, not {amount!r}")
        if resource in ("CPU", "GPU", "memory"):
            raise ConfigError(f"{at}.resources.{resource}: book {resource} with num_cpus or "
                              "memory_mb; resources is for custom ones")
        pairs.append((str(resource), float(amount)))
    namespace = table.get("namespace", "linkserver")
    if not isinstance(namespace, str) or not namespace:
        raise ConfigError(f"{at}.namespace must be a non-empty string, not {namespace!r}")
    return RayOptions(float(num_cpus), memory_mb, tuple(pairs), namespace)


def parse_config(
    data: Any, source: str = "the configuration", base: Path | None = None
) -> ServerConfig:
    """Check a decoded TOML/JSON document and return the server's pools.

    ``base`` is the folder relative key files of ``[access.users.NAME]`` are
    in (the configuration file's); None leaves them as written.

    Raises:
        ConfigError: the document does not describe pools as docs/configuration.md says.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a table of settings")
    unknown = set(data) - {"pools", "default", "access", "server_id"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key {sorted(unknown)[0]!r}; "
                          "expected 'pools' and optionally 'default', 'access' and 'server_id'")
    server_id = data.get("server_id")
    if server_id is not None and (not isinstance(server_id, str)
                                  or not SERVER_ID.fullmatch(server_id)):
        raise ConfigError(f"server_id must be 1-64 letters, digits, '.', '-' or '_', "
                          f"not {server_id!r}")
    access, users = _check_access(data.get("access", {}), base)
    pools_data = data.get("pools")
    if not isinstance(pools_data, dict) or not pools_data:
        raise ConfigError(f"{source} needs a 'pools' table with at least one pool")
    pools = []
    for name, values in pools_data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"pools.{name} must be a table of settings")
        pools.append(check_pool(str(name), values))
    default = data.get("default", pools[0].name)
    if not isinstance(default, str) or default not in {p.name for p in pools}:
        raise ConfigError(f"default = {default!r} names no pool of {source}")
    return ServerConfig(tuple(pools), default, **access, users=users, server_id=server_id)


_ACCESS = {
    "stop": ("admin", "anyone", "nobody"), "status": ("admin", "anyone"),
    # Not "admin": Quit[] may be buried anywhere in an evaluation, and only the
    # kernel sees it, which cannot tell who asked; an admin stops the server.
    "quit": ("nobody", "anyone"),
}


def _check_access(values: Any, base: Path | None) -> tuple[dict[str, str], tuple[User, ...]]:
    """Check the ``[access]`` table: who may stop the server and see its status, and its users."""
    if not isinstance(values, dict):
        raise ConfigError("access must be a table, e.g. [access] stop = \"admin\"")
    out = {}
    users = _check_users(values.get("users", {}), base)
    for key, value in values.items():
        if key == "users":
            continue
        if key not in _ACCESS:
            raise ConfigError(
                f"access.{key} is not an access setting; the settings are: "
                f"{', '.join(_ACCESS)}, users"
            )
        if value not in _ACCESS[key]:
            allowed = ", ".join(repr(v) for v in _ACCESS[key])
            raise ConfigError(f"access.{key} must be one of {allowed}, not {value!r}")
        out[f"{key}_allowed"] = value
    return out, users


#: ``[access.users.NAME]`` settings: name -> (types, the least value allowed).
_USER_LIMITS: dict[str, tuple[tuple[type, ...], float]] = {
    "kernels": ((int,), 1), "queued": ((int,), 1), "eval_seconds": ((int, float), 0.001),
    "memory_mb": ((int,), 64),
}
_USER_KEYS = ("key_file", "role", *_USER_LIMITS)


def _check_users(table: Any, base: Path | None) -> tuple[User, ...]:
    """Check ``[access.users.NAME]`` tables: a key file, a role and limits each."""
    if not isinstance(table, dict):
        raise ConfigError("access.users must be a table of users, e.g. "
                          "[access.users.alice] key_file = \"alice.key\"")
    users = []
    for name, values in table.items():
        at = f"access.users.{name}"
        if not isinstance(values, dict):
            raise ConfigError(f"{at} must be a table, e.g. [{at}] key_file = \"{name}.key\"")
        if name in BUILT_IN:
            raise ConfigError(f"{at}: the name {name!r} is the server's own "
                              f"(serve --{'user-' if name == 'user' else ''}key-file); "
                              "choose another")
        if not _USER_NAME.fullmatch(name):
            raise ConfigError(f"{at}: a user's name is letters, digits, '-' and '_' "
                              "(it appears in the log and the metrics)")
        for key in values:
            if key not in _USER_KEYS:
                raise ConfigError(f"{at}.{key} is not a user setting; the settings are: "
                                  + ", ".join(_USER_KEYS))
        key_file = values.get("key_file")
        if not isinstance(key_file, str) or not key_file:
            raise ConfigError(f"{at}.key_file is needed: the file holding {name}'s key "
                              "(linkserver keygen writes one)")
        if base is not None:
            key_file = str(base / key_file)
        role = values.get("role", "user")
        if role not in ROLES:
            raise ConfigError(f"{at}.role must be 'admin' or 'user', not {role!r}")
        limits: dict[str, Any] = {}
        for key, (types, least) in _USER_LIMITS.items():
            value: Any = values.get(key)
            if value is None:
                continue
            good = not isinstance(value, bool) and isinstance(value, types)
            if not good or values[key] < least:
                wanted = "a whole number" if types == (int,) else "a number of seconds"
                raise ConfigError(f"{at}.{key} must be {wanted}, at least {least:g}, "
                                  f"not {value!r}")
            limits[key] = value
        users.append(User(str(name), role=role, key_file=key_file, **limits))
    return tuple(users)


def load_config(path: str | Path) -> ServerConfig:
    """Read a ``.toml`` or ``.json`` pool configuration.

    Raises:
        ConfigError: the file cannot be read, parsed, or is not a valid configuration.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration {path}: {exc.strerror}") from exc
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid {path.suffix[1:].upper() or 'TOML'}: {exc}") from exc
    return parse_config(data, str(path), path.parent)
