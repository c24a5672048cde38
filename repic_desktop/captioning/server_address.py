"""Where the remote captioning servers are and how to reach them safely: addresses, API keys, options.

Privacy: photos go only to the URLs the user configured; the API key comes from an environment
variable or the OS keyring and lives only in the HTTP client's headers (never in the library,
provenance, job parameters or logs); a URL is stored and shown without its credentials; plain http to
anything but this computer needs an explicit opt-in. The client that uses these is `remote.py`.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any, Sequence
from urllib.parse import urlsplit, urlunsplit

from ..core.errors import RepicError

KEYRING_SERVICE = "repic-desktop"
DEFAULT_API_KEY_ENV = "REPIC_API_KEY"
DEFAULT_IN_FLIGHT = 8


class RemoteError(RepicError, RuntimeError):
    """A problem with the server set-up; the message is one sentence for the user."""


def is_local_host(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerAddress:
    """A server URL split into what may be shown/stored (`url`, never credentials) and the API root."""
    url: str          # scheme://host[:port][/path], no credentials, no trailing slash, no /v1
    url_password: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def parse(cls, raw: str, *, allow_http: bool = False) -> "ServerAddress":
        text = raw.strip()
        if "://" not in text:
            text = "http://" + text if is_local_host(text.split(":")[0].split("/")[0]) else "https://" + text
        bad = RemoteError(f"{strip_credentials(raw)!r} is not a server address like https://gpu-box:8000")
        if any(ord(c) < 33 or ord(c) == 127 for c in text):
            raise bad
        import httpx

        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
            httpx.URL(text)  # the host as httpx will use it (IDNA rules)
        except (ValueError, httpx.InvalidURL):
            raise bad from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad
        host = parts.hostname
        if parts.scheme == "http" and not allow_http and not is_local_host(host):
            raise RemoteError(f"refusing to send photos unencrypted to {host}: use https, or allow plain http "
                              "for this server explicitly (--allow-http, or the setting)")
        netloc = host if ":" not in host else f"[{host}]"
        if parts.port:
            netloc += f":{parts.port}"
        path = parts.path.rstrip("/")
        if path.endswith("/v1"):
            path = path[:-3]
        return cls(urlunsplit((parts.scheme, netloc, path, "", "")), parts.password)

    @property
    def api(self) -> str:
        return self.url + "/v1"

    @property
    def origin(self) -> str:
        p = urlsplit(self.url)
        return f"{p.scheme}://{p.netloc}"


def strip_credentials(raw: str) -> str:
    return re.sub(r"//[^/@]*@", "//", raw)


def api_key_for(address: ServerAddress, env_var: str | None = None) -> str | None:
    """The API key for a server: the named environment variable, else REPIC_API_KEY, else the OS keyring
    (entry "repic-desktop" / the server's origin), else a password given in the URL. None = no key."""
    for var in (env_var, DEFAULT_API_KEY_ENV):
        if var and os.environ.get(var):
            return os.environ[var]
    try:
        import keyring

        key = keyring.get_password(KEYRING_SERVICE, address.origin)
        if key:
            return key
    except Exception:  # no keyring backend on this system (headless Linux): env var only
        pass
    return address.url_password


def store_api_key(address: ServerAddress, key: str) -> None:
    import keyring

    keyring.set_password(KEYRING_SERVICE, address.origin, key)


@dataclass
class RemoteOptions:
    servers: Sequence[str]
    served_model: str | None = None
    in_flight: int = DEFAULT_IN_FLIGHT
    api_key_env: str | None = None
    ca_file: str | None = None
    allow_http: bool = False
    timeout: float = 600.0           # one caption: the whole answer (greedy, up to max_tokens)
    connect_timeout: float = 5.0
    patience: float = 120.0          # all servers down this long -> the job pauses


def server_settings(settings: Any) -> dict[str, Any]:
    """The remote-server preferences kept in Settings.extra["server"]."""
    raw = (getattr(settings, "extra", None) or {}).get("server") or {}
    return {"url": raw.get("url") or None, "served_model": raw.get("served_model") or None,
            "ca_file": raw.get("ca_file") or None, "allow_http": bool(raw.get("allow_http")),
            "api_key_env": raw.get("api_key_env") or None, "in_flight": int(raw.get("in_flight") or DEFAULT_IN_FLIGHT)}
