"""Service configuration: environment variables with the prefix KEYE_ (or a .env file).

The variable names are a contract with operators and tests (see the service spec);
every default works on one machine with no service running, except Kafka.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEMO_MODEL = "keye-demo"  # KEYE_MODEL=keye-demo: the model `keye train demo` writes under data_dir/models
MODEL_ANALYSIS_CONFIG = "analysis_config.json"  # in a checkpoint folder: the configuration it was trained for


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEYE_", env_file=".env", extra="ignore")

    # model
    model: str = "keye-tiny"
    device: str = "cpu"
    dtype: str = "float32"
    kernels: str | None = None  # "triton" | "torch"; None: Triton on CUDA, torch elsewhere

    analysis_config: Path | None = None  # JSON/YAML overriding analysis/default_config.json

    # stores
    data_dir: Path = Path(".keye")
    database_url: str | None = None  # default: SQLite file under data_dir
    qdrant_url: str | None = None
    qdrant_path: Path | None = None  # default: folder under data_dir
    redis_url: str = "redis://127.0.0.1:6379/0"

    # kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_ingest: str = "videos.ingest"
    topic_work: str = "videos.work"
    topic_analyzed: str = "videos.analyzed"
    topic_flags: str = "moderation.flags"
    topic_feedback: str = "feedback.events"
    topic_dlq: str = "videos.dlq"

    # training: this many new supervised feedback events queue a fine-tuning run (0: never)
    train_trigger_examples: int = 200
    train_config: Path | None = None  # JSON file of TrainConfig fields for the runs it queues (default: the defaults)
    # evaluation (`keye eval`): the held-out labelled corpus a run measures base and candidate on (else the
    # reviews), at most eval_limit videos; promotion refuses a headline metric worse by more than eval_tolerance
    eval_corpus: Path | None = None
    eval_limit: int = 50
    eval_tolerance: float = 0.02

    # development stack (`keye stack`); everything listens on loopback only
    stack_dir: Path = Path(".stack")
    kafka_version: str = "4.4.0"
    kafka_controller_port: int = 9093
    postgres_port: int = 5432
    stack_stop_timeout_s: float = 60.0  # `keye stack down` waits this long for a clean stop
    redis_port: int = 6379

    # safe fetching of video URIs
    file_roots: list[Path] = Field(default_factory=lambda: [Path.cwd()])  # uploads are always allowed too
    allow_private_addresses: bool = False
    allow_loopback_addresses: bool | None = None  # None: the same as allow_private_addresses
    max_fetch_bytes: int = 512 * 1024 * 1024
    fetch_timeout_s: float = 60.0  # the whole download, however slowly the source sends
    fetch_read_timeout_s: float = 15.0  # one network read

    # api (`keye api`)
    # proxies whose X-Forwarded-Proto/For are believed (uvicorn's forwarded_allow_ips: a comma list or "*")
    api_forwarded_allow_ips: str = "127.0.0.1,::1"
    api_max_upload_bytes: int = 512 * 1024 * 1024
    api_max_upload_total_bytes: int = 20 * 1024 * 1024 * 1024  # every stored upload together
    api_max_json_bytes: int = 4 * 1024 * 1024  # any other request body (JSON, forms); 413 beyond
    api_max_clip_seconds: float = 60.0
    api_claim_ttl_s: float = 15 * 60

    @model_validator(mode="after")
    def _model_folder_validator(self) -> Settings:
        return self._model_folder()

    def _model_folder(self) -> Settings:
        """keye-demo names its folder; a checkpoint folder's own analysis configuration is the default
        one (the prompts and budgets the model was trained for), unless KEYE_ANALYSIS_CONFIG is set."""
        if self.model == DEMO_MODEL:
            self.model = str(self.data_dir / "models" / DEMO_MODEL)
        own = Path(self.model) / MODEL_ANALYSIS_CONFIG
        if self.analysis_config is None and own.is_file():
            self.analysis_config = own
        return self

    def for_model(self, model: str, analysis_config: Path | None = None) -> Settings:
        """A copy that serves `model`. Its analysis configuration is `analysis_config` when given (a
        comparison under one configuration), else follows the new model's folder unless
        KEYE_ANALYSIS_CONFIG named one: a configuration the old model's folder supplied belongs to that model."""
        if analysis_config is not None:
            return self.model_copy(update={"model": model, "analysis_config": analysis_config})._model_folder()
        inherited = self.analysis_config == Path(self.model) / MODEL_ANALYSIS_CONFIG
        copy = self.model_copy(update={"model": model, **({"analysis_config": None} if inherited else {})})
        return copy._model_folder()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'keye.db').resolve()}"

    @property
    def upload_dir(self) -> Path:
        """Where the API stores uploaded videos; the workers read them from here."""
        return (self.data_dir / "uploads").resolve()

    @property
    def allowed_file_roots(self) -> list[Path]:
        return [*(Path(r).resolve() for r in self.file_roots), self.upload_dir]

    @property
    def resolved_qdrant_path(self) -> Path:
        return self.qdrant_path or self.data_dir / "qdrant"

    @property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1])


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
