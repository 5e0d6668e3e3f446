"""Keys, TLS and connection files: how a client finds a server and proves itself.

Three things a user should never have to type twice:

* **Keys** (docs/protocol.md §3.5). A key is a string of at least
  :data:`MIN_KEY_LENGTH` characters; its UTF-8 bytes are the HMAC key.
  ``linkserver serve`` makes one with :func:`new_key` unless told otherwise.
* **TLS**. A server either uses the certificate and key it is given or makes
  a self-signed pair (:func:`self_signed`); clients then trust exactly that
  certificate by its SHA-256 *fingerprint* (pinning), not a CA.
* **Connection files**. ``linkserver serve`` writes one JSON file, mode 0600,
  in the user's runtime directory (:func:`runtime_dir`) with the address, the
  key and the fingerprint, and removes it on exit; clients find it by the
  address they were given, or take the newest live one when given none.
  Jupyter's ``kernel-*.json`` is the model.

Nothing here opens a socket; :mod:`linkserver.transport.stream` applies the
SSL contexts made here.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import secrets
import ssl
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import LinkError, SecurityError
from .names import LinkName, parse_name

__all__ = [
    "MIN_KEY_LENGTH",
    "ConnectionInfo",
    "SecurityError",
    "check_key",
    "client_context",
    "find_connection",
    "fingerprint_of",
    "new_key",
    "read_key_file",
    "remove_connection_file",
    "runtime_dir",
    "self_signed",
    "server_context",
    "write_connection_file",
]

#: Shorter keys are refused: they could be guessed.
MIN_KEY_LENGTH = 16

_FINGERPRINT_PREFIX = "sha256:"


# ------------------------------------------------------------------ keys


def new_key() -> str:
    """Return a fresh random key: 64 hexadecimal characters (256 bits)."""
    return secrets.token_hex(32)


def check_key(key: str | bytes, source: str = "the key") -> bytes:
    """Return the bytes of a key, or raise if it is too short to be safe.

    Raises:
        SecurityError: fewer than :data:`MIN_KEY_LENGTH` characters.
    """
    data = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    data = data.strip()
    if len(data) < MIN_KEY_LENGTH:
        raise SecurityError(
            f"{source} is {len(data)} characters long; a key needs at least "
            f"{MIN_KEY_LENGTH} (make one with: python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return data


def read_key_file(path: str | Path) -> bytes:
    """Read a key from a file (its first line, stripped).

    Raises:
        SecurityError: the file cannot be read or holds too short a key.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SecurityError(f"cannot read the key file {path}: {exc.strerror}") from exc
    line = text.splitlines()[0] if text.strip() else ""
    return check_key(line, f"the key in {path}")


# ------------------------------------------------------------------ TLS


def fingerprint_of(der: bytes) -> str:
    """Return ``"sha256:<hex>"`` for a DER certificate."""
    return _FINGERPRINT_PREFIX + hashlib.sha256(der).hexdigest()


def _cert_fingerprint(cert_path: Path) -> str:
    pem = cert_path.read_text(encoding="ascii")
    return fingerprint_of(ssl.PEM_cert_to_DER_cert(pem))


def self_signed(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """Make a self-signed certificate and key for ``host`` in ``directory`` (key mode 0600).

    Returns:
        ``(cert_path, key_path)``.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "linkserver")])
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for text in {host, "127.0.0.1", "::1"}:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(text)))
        except ValueError:
            if text:
                names.append(x509.DNSName(text))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(private, hashes.SHA256())
    )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    stem = f"tls-{os.getpid()}-{secrets.token_hex(4)}"
    cert_path = directory / f"{stem}.crt"
    key_path = directory / f"{stem}.key"
    _write_private(key_path, private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def server_context(cert: str | Path, key: str | Path) -> tuple[ssl.SSLContext, str]:
    """Return a TLS server context for a certificate and key, and the certificate's fingerprint.

    Raises:
        SecurityError: the files cannot be read or do not match.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
        fingerprint = _cert_fingerprint(Path(cert))
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise SecurityError(
            f"cannot use the TLS certificate {cert} with the key {key}: {exc}; "
            "give a PEM certificate and its PEM private key"
        ) from exc
    return context, fingerprint


def client_context(fingerprint: str | None = None, cafile: str | None = None) -> ssl.SSLContext:
    """Return a TLS client context.

    With a ``fingerprint`` the certificate is not checked against any CA:
    :func:`check_fingerprint` must be called on the connection instead
    (pinning, as for a self-signed server). Without one, the certificate must
    chain to ``cafile`` or the system's CAs and name the host.
    """
    if fingerprint is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def check_fingerprint(der: bytes | None, expected: str, where: str) -> None:
    """Raise unless the peer certificate ``der`` has the pinned fingerprint.

    Raises:
        SecurityError: no certificate, or another one.
    """
    if der is None:
        raise SecurityError(f"{where} presented no TLS certificate")
    got = fingerprint_of(der)
    if not secrets.compare_digest(got, expected.lower()):
        raise SecurityError(
            f"{where} presented a TLS certificate with fingerprint {got}, not the pinned "
            f"{expected}; it is not the server you meant (or it made a new certificate)"
        )


# ------------------------------------------------------------------ connection files


def runtime_dir() -> Path:
    """Where connection files live: ``$LINKSERVER_RUNTIME_DIR``, else
    ``$XDG_RUNTIME_DIR/linkserver``, else ``~/.local/share/linkserver/runtime``."""
    override = os.environ.get("LINKSERVER_RUNTIME_DIR")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "linkserver"
    return Path.home() / ".local" / "share" / "linkserver" / "runtime"


@dataclass
class ConnectionInfo:
    """What a connection file says about one running server.

    Attributes:
        address: the link name clients use, ``"PORT@HOST"``.
        key: the key (a string), or None if the server asks for none.
        tls: whether the server speaks TLS.
        fingerprint: the pinned certificate fingerprint (``"sha256:..."``) with TLS.
        pid: the server's process id.
        pools: the server's pool names, the default first.
        path: where the file is (not stored in it).
    """

    address: str
    key: str | None = None
    tls: bool = False
    fingerprint: str | None = None
    pid: int = field(default_factory=os.getpid)
    pools: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    version: int = 1
    path: Path | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("path")
        return json.dumps(data, indent=2) + "\n"


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the start, atomically."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_connection_file(info: ConnectionInfo, directory: Path | None = None) -> Path:
    """Write ``info`` as ``server-<port>-<pid>.json`` (mode 0600) and return its path.

    Raises:
        SecurityError: the runtime directory cannot be made or written.
    """
    directory = directory or runtime_dir()
    name = parse_name(info.address)
    label = name.port if name.kind == "tcp" else "unix"
    path = directory / f"server-{label}-{info.pid}.json"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if directory.stat().st_uid == os.getuid() and directory.stat().st_mode & 0o077:
            directory.chmod(0o700)  # an existing directory others could list or write
        _write_private(path, info.to_json().encode("utf-8"))
    except OSError as exc:
        raise SecurityError(
            f"cannot write the connection file in {directory}: {exc.strerror}; "
            "set LINKSERVER_RUNTIME_DIR to a directory you can write"
        ) from exc
    info.path = path
    return path


def remove_connection_file(path: Path | None) -> None:
    """Remove a connection file this process wrote; a missing one is fine."""
    if path is not None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _load(path: Path) -> ConnectionInfo | None:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        info = ConnectionInfo(
            address=str(data["address"]),
            key=data.get("key"),
            tls=bool(data.get("tls", False)),
            fingerprint=data.get("fingerprint"),
            pid=int(data.get("pid", 0)),
            pools=list(data.get("pools", [])),
            started=float(data.get("started", 0.0)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    info.path = path
    return info


def _same_place(a: LinkName, b: LinkName) -> bool:
    if a.kind != b.kind:
        return False
    if a.kind == "unix":
        return os.path.realpath(a.path) == os.path.realpath(b.path)
    if a.port != b.port:
        return False
    return a.host == b.host or (_loopback(a.host) and _loopback(b.host))


def _loopback(host: str) -> bool:
    if host in ("", "localhost", "0.0.0.0", "::"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def find_connection(name: Any = None, directory: Path | None = None) -> ConnectionInfo | None:
    """Return the connection file of a live server at ``name`` (the newest, for None).

    Files of servers whose process is gone are skipped. A server listening on
    every interface matches any loopback address.
    """
    directory = directory or runtime_dir()
    try:
        paths = sorted(directory.glob("server-*.json"))
    except OSError:
        return None
    wanted = None if name is None else parse_name(name)
    found: list[ConnectionInfo] = []
    for path in paths:
        info = _load(path)
        if info is None or not _alive(info.pid):
            continue
        if wanted is not None:
            try:
                if not _same_place(parse_name(info.address), wanted):
                    continue
            except LinkError:
                continue
        found.append(info)
    if not found:
        return None
    return max(found, key=lambda info: info.started)


# ------------------------------------------------------------------ what a client uses


@dataclass
class Credentials:
    """What a client brings to one connection: its key and its TLS settings."""

    key: bytes | None = None
    tls: ssl.SSLContext | None = None
    fingerprint: str | None = None


def default_address(fallback: str) -> str:
    """The address of the newest live server's connection file, else ``fallback``."""
    info = find_connection(None)
    return info.address if info is not None else fallback


def credentials_for(
    name: Any,
    *,
    key: str | bytes | None = None,
    tls: bool | None = None,
    fingerprint: str | None = None,
    cafile: str | None = None,
) -> Credentials:
    """Decide how to connect to ``name``: given values first, then ``$LINKSERVER_KEY``,
    then the connection file of a server at that address.

    Raises:
        SecurityError: a key that is too short.
    """
    info = None
    if key is None or tls is None:
        try:
            info = find_connection(name)
        except LinkError:
            info = None
    if key is None:
        env = os.environ.get("LINKSERVER_KEY")
        if env:
            key = env
        elif info is not None and info.key:
            key = info.key
    if tls is None:
        tls = bool(fingerprint or cafile) or (info is not None and info.tls)
    if tls and fingerprint is None and cafile is None and info is not None:
        fingerprint = info.fingerprint
    credentials = Credentials(key=None if key is None else check_key(key))
    if tls:
        credentials.tls = client_context(fingerprint, cafile)
        credentials.fingerprint = fingerprint
    return credentials
