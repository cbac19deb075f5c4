"""Settings: one msgspec Struct, read from SAFESPACE_* environment variables (and .env)."""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

import msgspec
from dotenv import dotenv_values

PREFIX = "SAFESPACE_"
MIN_GROUP_SIZE_FLOOR = 3  # below 3, "aggregates" describe one or two people


class SettingsError(Exception):
    """A setting is missing or wrong; the message names the variable and the fix."""


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    # Every field is documented in README.md (a test keeps the two in step).
    data_dir: str = "./data"
    database_url: str = ""  # empty: a SQLite file in data_dir
    base_url: str = "http://127.0.0.1:8000"
    secret_key_file: str = ""  # empty: data_dir/secret.key, generated on first start
    encryption_key_file: str = ""  # empty: data_dir/encryption.keys, generated on first start
    default_min_group_size: int = 5
    session_idle_minutes: int = 60 * 24 * 3
    stories_per_week: int = 3  # most stories one member may share in a week
    story_release_weekday: int = 0  # the weekly release of waiting stories: 0 = Monday
    story_release_hour: int = 9  # ... at this hour in the community's time zone
    trusted_proxies: str = "127.0.0.1"  # proxies whose X-Forwarded-For names the real client (rate limits)
    schedule_interval_seconds: int = 60  # how often `serve` opens/closes rounds; 0: only `safespace tick`
    token_key_bits: int = 2048  # RSA size of the answer-token keys (RFC 9474): 2048 or 3072
    checkin_close_minutes: int = 120  # a check-in left open closes itself after this long
    # Private mode: a browser sends no signed-in request this many seconds either side of an
    # anonymous answer, story or reply (docs/THREAT_MODEL.md, "What timing can still tell").
    private_window_seconds: int = 30
    # Who may start a community: anyone signed in, or only operators (`safespace create-community`).
    community_creators: Literal["anyone", "operators"] = "anyone"
    database_pool_size: int = 20  # connections each process keeps open and uses, no more
    # A request waits this long at most for a pooled connection, and each of its statements runs
    # this long at most; then it answers 503 (commands and the schedule have no such limit).
    database_pool_timeout_seconds: int = 5
    database_statement_timeout_seconds: int = 10
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    smtp_host: str = ""  # empty: the console mailer prints messages instead of sending them
    smtp_port: int = 587
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_user: str = ""
    smtp_password: str = ""
    mail_from: str = "Safespace <safespace@localhost>"
    # Single sign-on (OpenID Connect): a JSON list of providers, each {"id", "name", "issuer",
    # "client_id", "client_secret"}; empty: magic links only (identity/sso.py).
    oidc_providers: str = ""
    # Webhooks: a PEM file of CAs trusted beside the system's for their HTTPS endpoints (empty:
    # the system's only), and whether an endpoint may be on a private or loopback address.
    webhook_ca_file: str = ""
    webhook_allow_private: bool = False

    @property
    def sso_providers(self) -> tuple[OIDCProvider, ...]:
        return parse_providers(self.oidc_providers)

    @property
    def database(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{Path(self.data_dir).resolve() / 'safespace.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.database.startswith("sqlite")

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")

    @property
    def encryption_key_path(self) -> Path:
        return Path(self.encryption_key_file or Path(self.data_dir) / "encryption.keys")

    def secret_key(self) -> bytes:
        """The installation's secret, created with mode 0600 on first use."""
        path = Path(self.secret_key_file or Path(self.data_dir) / "secret.key")
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
        if path.is_dir():
            raise SettingsError(f"SAFESPACE_SECRET_KEY_FILE: {path} is a directory, not a key file.")
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SettingsError(
                f"SAFESPACE_SECRET_KEY_FILE: {path} can be read by other users; run `chmod 600 {path}`."
            )
        try:
            key = bytes.fromhex(path.read_text().strip())
        except OSError as exc:  # a directory, unreadable
            raise SettingsError(f"SAFESPACE_SECRET_KEY_FILE: {path} cannot be read ({exc.strerror}).") from None
        except (ValueError, UnicodeDecodeError):
            key = b""
        if len(key) < 32:
            raise SettingsError(
                f"SAFESPACE_SECRET_KEY_FILE: {path} must hold at least 32 bytes as hex; "
                "delete it to have a new one generated."
            )
        return key


class OIDCProvider(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One OpenID Connect provider: `id` names it in addresses, `name` on the sign-in button."""

    id: str
    name: str
    issuer: str
    client_id: str
    client_secret: str


def parse_providers(text: str) -> tuple[OIDCProvider, ...]:
    """SAFESPACE_OIDC_PROVIDERS read and checked; SettingsError names what to fix."""
    if not text.strip():
        return ()
    example = '[{"id": "corp", "name": "Corp", "issuer": "https://id.corp.example", "client_id": "...", "client_secret": "..."}]'
    try:
        providers = msgspec.json.decode(text, type=tuple[OIDCProvider, ...])
    except msgspec.DecodeError as exc:
        raise SettingsError(f"SAFESPACE_OIDC_PROVIDERS: {exc}. Use a JSON list such as {example}.") from None
    for provider in providers:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,30}", provider.id):
            raise SettingsError(f"SAFESPACE_OIDC_PROVIDERS: id {provider.id!r}: use lower-case letters, digits and '-', e.g. \"corp\".")
        if urlsplit(provider.issuer).scheme not in {"http", "https"} or not provider.name.strip():
            raise SettingsError(f"SAFESPACE_OIDC_PROVIDERS: provider {provider.id!r} needs a name and an http(s) issuer URL.")
    if len({p.id for p in providers}) != len(providers):
        raise SettingsError("SAFESPACE_OIDC_PROVIDERS: two providers have the same id; give each its own.")
    return providers


def _field_names() -> tuple[str, ...]:
    return Settings.__struct_fields__


def setting_variables() -> list[tuple[str, object]]:
    """(variable name, default) for every setting, for docs and checks."""
    defaults = Settings()
    return [(PREFIX + name.upper(), getattr(defaults, name)) for name in _field_names()]


def _source(environ: Mapping[str, str] | None, env_file: str | None) -> dict[str, str | None]:
    source: dict[str, str | None] = {}
    if env_file and Path(env_file).is_file():
        source.update(dotenv_values(env_file))
    source.update(os.environ if environ is None else environ)
    return source


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | None = ".env") -> Settings:
    """Read settings from the environment (which wins) and an optional .env file."""
    source = _source(environ, env_file)

    known = {PREFIX + name.upper(): name for name in _field_names()}
    raw: dict[str, str] = {}
    for variable, value in source.items():
        if not variable.startswith(PREFIX) or value is None:
            continue
        if variable not in known:
            close = ", ".join(sorted(known))
            raise SettingsError(f"{variable} is not a Safespace setting. Known settings: {close}.")
        raw[known[variable]] = value

    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_explain(exc)) from None
    _check(settings)
    return settings


def served_at(
    settings: Settings, host: str, port: int, environ: Mapping[str, str] | None = None, env_file: str | None = ".env"
) -> Settings:
    """The settings with the base URL following the address served (`serve --port 8080`, and
    `demo --port 8080`, which prints links for it) unless SAFESPACE_BASE_URL is set: then the
    public address is another, e.g. a proxy's, and stays as it is."""
    if _source(environ, env_file).get(PREFIX + "BASE_URL"):
        return settings
    if host in ("", "0.0.0.0", "::"):  # every interface: links open on this machine
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"  # an IPv6 address in a URL
    return msgspec.structs.replace(settings, base_url=f"http://{host}:{port}")


def _explain(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    found = re.search(r"\$\.(\w+)", text)
    name = found.group(1) if found else ""
    variable = PREFIX + name.upper() if name else "a SAFESPACE_ setting"
    reason = text.split(" - at ", 1)[0]
    hint = get_type_hints(Settings).get(name)
    if get_origin(hint) is Literal:
        expected = "one of " + ", ".join(get_args(hint))
    else:
        expected = f"a value of type {getattr(hint, '__name__', hint)}"
    return f"{variable}: {reason}. Use {expected}."


def _check(settings: Settings) -> None:
    if settings.default_min_group_size < MIN_GROUP_SIZE_FLOOR:
        raise SettingsError(
            f"SAFESPACE_DEFAULT_MIN_GROUP_SIZE: {settings.default_min_group_size} is below "
            f"{MIN_GROUP_SIZE_FLOOR}; results about one or two people would identify them. Use 3 or more."
        )
    base = urlsplit(settings.base_url)
    if base.scheme not in {"http", "https"} or not base.netloc:
        raise SettingsError(
            f"SAFESPACE_BASE_URL: {settings.base_url!r} is not an http(s) URL; "
            "use the address people open, e.g. https://safespace.example.org."
        )
    if settings.database_url and not settings.database_url.startswith(
        ("sqlite+aiosqlite://", "postgresql+asyncpg://")
    ):
        raise SettingsError(
            "SAFESPACE_DATABASE_URL: use sqlite+aiosqlite:///path/to/file.db or "
            "postgresql+asyncpg://user:password@host/database."
        )
    if settings.session_idle_minutes < 5:
        raise SettingsError("SAFESPACE_SESSION_IDLE_MINUTES: use at least 5 minutes.")
    if settings.stories_per_week < 1:
        raise SettingsError("SAFESPACE_STORIES_PER_WEEK: use 1 or more.")
    if not 0 <= settings.story_release_weekday <= 6:
        raise SettingsError("SAFESPACE_STORY_RELEASE_WEEKDAY: use 0 (Monday) to 6 (Sunday).")
    if not 0 <= settings.story_release_hour <= 23:
        raise SettingsError("SAFESPACE_STORY_RELEASE_HOUR: use an hour from 0 to 23.")
    if settings.schedule_interval_seconds < 0:
        raise SettingsError("SAFESPACE_SCHEDULE_INTERVAL_SECONDS: use 0 (off) or a number of seconds, e.g. 60.")
    if settings.checkin_close_minutes < 5:
        raise SettingsError("SAFESPACE_CHECKIN_CLOSE_MINUTES: a check-in needs at least 5 minutes; use 5 or more.")
    if settings.token_key_bits not in (2048, 3072):
        raise SettingsError("SAFESPACE_TOKEN_KEY_BITS: use 2048 or 3072.")
    if not 1 <= settings.private_window_seconds <= 3600:
        raise SettingsError("SAFESPACE_PRIVATE_WINDOW_SECONDS: use a number of seconds from 1 to 3600, e.g. 30.")
    if not 2 <= settings.database_pool_size <= 500:
        raise SettingsError("SAFESPACE_DATABASE_POOL_SIZE: use a number of connections from 2 to 500, e.g. 20.")
    if not 1 <= settings.database_pool_timeout_seconds <= 600:
        raise SettingsError("SAFESPACE_DATABASE_POOL_TIMEOUT_SECONDS: use a number of seconds from 1 to 600, e.g. 5.")
    if not 1 <= settings.database_statement_timeout_seconds <= 3600:
        raise SettingsError("SAFESPACE_DATABASE_STATEMENT_TIMEOUT_SECONDS: use a number of seconds from 1 to 3600, e.g. 10.")
    parse_providers(settings.oidc_providers)
    if settings.webhook_ca_file and not Path(settings.webhook_ca_file).is_file():
        raise SettingsError(f"SAFESPACE_WEBHOOK_CA_FILE: {settings.webhook_ca_file} is not a file; give the path of a PEM bundle of CA certificates, or leave it empty.")
    if not 0 < settings.smtp_port < 65536:
        raise SettingsError("SAFESPACE_SMTP_PORT: use a port number between 1 and 65535.")
