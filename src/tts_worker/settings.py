"""One validated, frozen settings object read from the environment at start.

Everything configurable lives here and is passed explicitly to what needs it;
no other module reads `os.environ`. Secrets are `SecretStr` so they never
reach a log line or a repr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    model_dir: Path = Field(Path("models"), description="Baked model directory (see bake_models.py).")
    storage_dir: Path = Field(Path("outputs"), description="Local storage root when no bucket is set.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    max_text_chars: int = Field(5000, ge=1, le=100_000)
    max_reference_seconds: float = Field(12.0, gt=1.0, le=20.0)
    warmup: bool = Field(True, description="Run one tiny synthesis at start so the first job is warm.")

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
