"""Settings: declared once in SETTINGS, resolved flags > environment > defaults.

No other module reads os.environ; `cli` builds one frozen Settings and passes it down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping


class Secret(str):
    """A string that never prints itself (repr/str in logs show '**********')."""

    def __repr__(self) -> str:
        return "Secret('**********')"

    def reveal(self) -> str:
        return str.__str__(self)


@dataclass(frozen=True, slots=True)
class SettingSpec:
    name: str
    env: str | None
    flag: str | None
    default: str | None
    help: str


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("data_dir", "TESSEL_DATA_DIR", "--data-dir", "./tessel-data",
                "where the embedded catalog and blobs live"),
    SettingSpec("catalog_url", "TESSEL_CATALOG_URL", None, None,
                "SQLAlchemy URL of the catalog (default: sqlite under the data dir)"),
    SettingSpec("blob_url", "TESSEL_BLOB_URL", None, None,
                "where frames and objects go: file:///path or s3://bucket/prefix (default: file:// under the data dir)"),
    SettingSpec("s3_endpoint_url", "TESSEL_S3_ENDPOINT_URL", None, None,
                "S3-compatible endpoint for s3:// URLs"),
    SettingSpec("s3_access_key_id", "TESSEL_S3_ACCESS_KEY_ID", None, None,
                "access key for that S3 endpoint (default: the standard AWS credential chain)"),
    SettingSpec("s3_secret_access_key", "TESSEL_S3_SECRET_ACCESS_KEY", None, None,
                "secret key for that S3 endpoint"),
    SettingSpec("access_key_id", "TESSEL_ACCESS_KEY_ID", None, None,
                "the bootstrap administrator's access key id (default: generated on first start)"),
    SettingSpec("secret_access_key", "TESSEL_SECRET_ACCESS_KEY", None, None,
                "the bootstrap administrator's secret key"),
    SettingSpec("dask_scheduler", "TESSEL_DASK_SCHEDULER", None, None,
                "tcp://host:port of a Dask scheduler for import jobs (default: a local process pool)"),
    SettingSpec("master_key_file", "TESSEL_MASTER_KEY_FILE", None, None,
                "file holding the master key that wraps each datastore's data keys (default: master.key in the data dir, generated on first use)"),
    SettingSpec("master_key", "TESSEL_MASTER_KEY", None, None,
                "the master keys themselves, instead of a file: [NAME:]BASE64[,OLDER_BASE64...] entries separated by ';' (docs/security.md)"),
    SettingSpec("encryption_at_rest", "TESSEL_ENCRYPTION_AT_REST", None, "on",
                "on: blobs of new datastores are encrypted (AES-256-GCM); off: stored as they are"),
    SettingSpec("cors_origins", "TESSEL_CORS_ORIGINS", None, "*",
                "comma-separated origins allowed to call the HTTP API from a browser"),
    SettingSpec("import_roots", "TESSEL_IMPORT_ROOTS", None, None,
                "colon-separated folders that file:// import sources and outputs must lie under"),
    SettingSpec("oidc_issuer", "TESSEL_OIDC_ISSUER", None, None,
                "OpenID Connect issuer whose Bearer tokens are accepted (DICOMweb, viewer); unset: none"),
    SettingSpec("oidc_audience", "TESSEL_OIDC_AUDIENCE", None, None,
                "the audience (aud) those tokens must name; unset: not checked"),
    SettingSpec("oidc_jwks_url", "TESSEL_OIDC_JWKS_URL", None, None,
                "the issuer's JWKS URL (default: jwks_uri of ISSUER/.well-known/openid-configuration)"),
    SettingSpec("oidc_policy_file", "TESSEL_OIDC_POLICY_FILE", None, None,
                "JSON file mapping a token claim's values to policies (docs/security.md)"),
    SettingSpec("host", "TESSEL_HOST", "--host", "127.0.0.1", "HTTP bind address"),
    SettingSpec("port", "TESSEL_PORT", "--port", "8080", "HTTP port"),
    SettingSpec("dicom_port", "TESSEL_DICOM_PORT", "--dicom-port", "11112", "DICOM (DIMSE) port"),
    SettingSpec("ae_title", "TESSEL_AE_TITLE", "--ae-title", "TESSEL", "DIMSE AE title"),
    SettingSpec("dicom_datastore", "TESSEL_DICOM_DATASTORE", "--dicom-datastore", None,
                "datastore (id or name) that DIMSE stores into and queries (default: the only datastore)"),
    SettingSpec("dicom_max_associations", "TESSEL_DICOM_MAX_ASSOCIATIONS", None, "32",
                "DIMSE associations served at once; more are rejected (local limit exceeded)"),
    SettingSpec("dicom_timeout", "TESSEL_DICOM_TIMEOUT", None, "120",
                "seconds a DIMSE association may stay silent, or a peer may take to answer, before it is aborted"),
    SettingSpec("workers", "TESSEL_WORKERS", "--workers", None,
                "processes for CPU-bound import work (default: the number of cores)"),
    SettingSpec("frame_cache_mb", "TESSEL_FRAME_CACHE_MB", None, "256",
                "memory kept for frames lately served decoded or transcoded (MB; 0 turns it off)"),
    SettingSpec("access_log", "TESSEL_ACCESS_LOG", "--access-log", None,
                "log every HTTP request (client, method, path, status) to standard output"),
    SettingSpec("region", "TESSEL_REGION", None, "us-east-1", "region named in ARNs"),
    SettingSpec("account_id", "TESSEL_ACCOUNT_ID", None, "000000000000", "account id named in ARNs"),
    SettingSpec("max_datastores", "TESSEL_MAX_DATASTORES", None, "100",
                "datastores that may exist at once (CreateDatastore beyond it: ServiceQuotaExceededException)"),
    SettingSpec("max_import_jobs", "TESSEL_MAX_IMPORT_JOBS", None, "100",
                "unfinished import jobs per datastore (StartDICOMImportJob beyond it: ServiceQuotaExceededException)"),
    SettingSpec("rate_limit", "TESSEL_RATE_LIMIT", None, None,
                "AHI API requests per second per access key and operation, bursts of twice that (beyond it: "
                "ThrottlingException; default: no limit)"),
)

_SECRETS = {"s3_secret_access_key", "secret_access_key", "master_key"}


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("./tessel-data")
    catalog_url: str | None = None
    blob_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: Secret | None = None
    access_key_id: str | None = None
    secret_access_key: Secret | None = None
    dask_scheduler: str | None = None
    master_key_file: Path | None = None
    master_key: Secret | None = None
    encryption_at_rest: bool = True
    cors_origins: tuple[str, ...] = ("*",)
    import_roots: tuple[Path, ...] = field(default_factory=tuple)
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_policy_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    dicom_port: int = 11112
    ae_title: str = "TESSEL"
    dicom_datastore: str | None = None
    dicom_max_associations: int = 32
    dicom_timeout: float = 120.0
    workers: int | None = None
    frame_cache_mb: int = 256
    access_log: bool = False
    region: str = "us-east-1"
    account_id: str = "000000000000"
    max_datastores: int = 100
    max_import_jobs: int = 100
    rate_limit: float | None = None

    @property
    def resolved_catalog_url(self) -> str:
        return self.catalog_url or f"sqlite:///{(self.data_dir / 'catalog.sqlite').resolve()}"

    @property
    def resolved_blob_url(self) -> str:
        return self.blob_url or (self.data_dir / "blobs").resolve().as_uri()

    @property
    def resolved_master_key_file(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"

    @property
    def resolved_workers(self) -> int:
        return self.workers or max(1, os.cpu_count() or 1)

    @property
    def resolved_import_roots(self) -> tuple[Path, ...]:
        if self.import_roots:
            return self.import_roots
        import tempfile

        return ((self.data_dir / "imports").resolve(), Path(tempfile.gettempdir()).resolve())

    def with_(self, **changes: Any) -> "Settings":
        return replace(self, **changes)


def _convert(name: str, raw: str) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if name in ("data_dir", "master_key_file", "oidc_policy_file"):
        return Path(raw)
    if name in ("port", "dicom_port", "workers", "frame_cache_mb", "max_datastores", "max_import_jobs",
                "dicom_max_associations"):
        return int(raw)
    if name == "encryption_at_rest":
        value = raw.strip().lower()
        if value not in ("on", "off", "true", "false", "1", "0", "yes", "no"):
            from tessel.errors import InvalidInput

            raise InvalidInput(f"TESSEL_ENCRYPTION_AT_REST is on or off, not {raw!r}")
        return value in ("on", "true", "1", "yes")
    if name == "access_log":
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if name in ("rate_limit", "dicom_timeout"):
        return float(raw)
    if name == "cors_origins":
        return tuple(o.strip() for o in raw.split(",") if o.strip())
    if name == "import_roots":
        return tuple(Path(p).resolve() for p in raw.split(":") if p)
    if name in _SECRETS:
        return Secret(raw)
    del kind
    return raw


def load_settings(flags: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Flags (already parsed, None = not given) win over the environment, which wins over defaults."""
    flags = flags or {}
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for spec in SETTINGS:
        flag_value = flags.get(spec.name)
        if flag_value is not None:
            values[spec.name] = flag_value if not isinstance(flag_value, str) else _convert(spec.name, flag_value)
        elif spec.env and environ.get(spec.env):
            values[spec.name] = _convert(spec.name, environ[spec.env])
        elif spec.default is not None:
            values[spec.name] = _convert(spec.name, spec.default)
    return Settings(**values)
