"""Settings of ``meshplane serve``: one typed tree, each section owned by one component.

Built once at start-up from command-line flags and ``MESHPLANE_*`` environment variables
(flags win); nothing reads the environment anywhere else.  Used by ``meshplane.server.run``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_API_PORT = 8765
DEFAULT_XDS_PORT = 18000
DEFAULT_HOST = "127.0.0.1"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "000000000000"


def default_data_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "meshplane"


@dataclass(frozen=True, slots=True)
class StoreSettings:
    data_dir: Path
    database_url: str | None = None


@dataclass(frozen=True, slots=True)
class ApiSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_API_PORT


@dataclass(frozen=True, slots=True)
class XdsSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_XDS_PORT


@dataclass(frozen=True, slots=True)
class Settings:
    store: StoreSettings
    api: ApiSettings = field(default_factory=ApiSettings)
    xds: XdsSettings = field(default_factory=XdsSettings)
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    log_level: str = "info"

    @classmethod
    def load(
        cls,
        *,
        data_dir: Path | None = None,
        database_url: str | None = None,
        host: str | None = None,
        api_port: int | None = None,
        xds_port: int | None = None,
        region: str | None = None,
        account_id: str | None = None,
        log_level: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Settings:
        environ = os.environ if env is None else env
        resolved_host = host or environ.get("MESHPLANE_HOST") or DEFAULT_HOST
        return cls(
            store=StoreSettings(
                data_dir=data_dir
                or Path(environ.get("MESHPLANE_DATA_DIR") or default_data_dir(environ)),
                database_url=database_url or environ.get("MESHPLANE_DATABASE_URL") or None,
            ),
            api=ApiSettings(
                host=resolved_host,
                port=api_port or int(environ.get("MESHPLANE_API_PORT") or DEFAULT_API_PORT),
            ),
            xds=XdsSettings(
                host=resolved_host,
                port=xds_port or int(environ.get("MESHPLANE_XDS_PORT") or DEFAULT_XDS_PORT),
            ),
            region=region or environ.get("MESHPLANE_REGION") or DEFAULT_REGION,
            account_id=account_id or environ.get("MESHPLANE_ACCOUNT_ID") or DEFAULT_ACCOUNT_ID,
            log_level=log_level or environ.get("MESHPLANE_LOG_LEVEL") or "info",
        )
