"""Users of a server: a name per key, a role, and the limits that name carries.

A server run for others (a class, a lab, a team of agents) gives each person
or agent a key of their own in ``[access.users.NAME]`` (docs/configuration.md,
"Users and quotas"). The handshake tells which key a client proved
(:attr:`linkserver.aio.link.Link.role` holds the key's label, which is the
user's name); the service looks the :class:`User` up by that name and every
part of the server reads the limits from it:

=================  ==========================================================
``kernels``        pool kernels held at once, persistent ones kept for the
                   user included (:class:`~linkserver.broker.pool.PoolBroker`)
``queued``         requests waiting in one kernel's queue at once, over all
                   the user's links (:class:`~linkserver.broker.core.KernelCore`)
``eval_seconds``   seconds one evaluation may run before the server aborts it
                   (the core asks the glue for a timer)
``memory_mb``      address-space limit of each pool kernel given to the user
                   (lowered with ``prlimit`` when the kernel is handed over)
=================  ==========================================================

A user over a limit gets one sentence that names the limit and the setting
that sets it (:meth:`User.over`); the log and the metrics name the user, never
the key. The keys of ``serve --key-file`` and ``--user-key-file`` are the
users ``admin`` and ``user``, without limits.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BUILT_IN", "ROLES", "User"]

#: What a user may be: ``admin`` may stop the server and see its status (``[access]``).
ROLES = ("admin", "user")


@dataclass(frozen=True, slots=True)
class User:
    """One user: a name, a role, where the key is, and limits (None: no limit).

    Attributes:
        name: what the log, the metrics and the messages call the user.
        role: ``"admin"`` or ``"user"``.
        key_file: the file holding the user's key (docs/security.md); None for
            the server's own keys, which are read elsewhere.
        kernels: pool kernels held at once.
        queued: requests waiting in one kernel's queue at once.
        eval_seconds: seconds one evaluation may run.
        memory_mb: address-space limit of each pool kernel, in MiB.
    """

    name: str
    role: str = "user"
    key_file: str | None = None
    kernels: int | None = None
    queued: int | None = None
    eval_seconds: float | None = None
    memory_mb: int | None = None

    def over(self, limit: str) -> str:
        """The sentence a user over ``limit`` gets: which limit, which setting, what to do."""
        value = getattr(self, limit)
        setting = f"access.users.{self.name}.{limit}"
        if limit == "kernels":
            return (f"user {self.name} already holds {value} kernel{'s' * (value != 1)}, the "
                    f"most {setting} allows; close a link that holds one, or let a "
                    "persistent kernel's keep-alive pass")
        if limit == "queued":
            return (f"user {self.name} already has {value} request{'s' * (value != 1)} "
                    f"waiting, the most {setting} allows; wait for answers before sending more")
        return (f"this evaluation ran {value:g} s, the most {setting} allows user "
                f"{self.name}; it was aborted")


#: The users the server's own keys stand for (``--key-file``, ``--user-key-file``).
BUILT_IN = {"admin": User("admin", role="admin"), "user": User("user")}
