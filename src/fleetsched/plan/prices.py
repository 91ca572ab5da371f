"""Price per GPU-hour: the shipped table (``data/gpu_prices.yaml``) or the user's file."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from fleetsched.core.config import parse_yaml_model, read_text
from fleetsched.errors import InputError
from fleetsched.perf.hardware import get_gpu


class PriceFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    prices: dict[str, float] = Field(min_length=1)


def load_prices(path: str | Path | None = None) -> dict[str, float]:
    """GPU catalog name -> USD per GPU-hour. A user file replaces the entries it names."""
    text = resources.files("fleetsched.data").joinpath("gpu_prices.yaml").read_text()
    table = dict(parse_yaml_model(text, "<shipped prices>", PriceFile, "a price file").prices)
    if path is not None:
        user = parse_yaml_model(read_text(path, "price file"), str(path), PriceFile, "a price file")
        for name, price in user.prices.items():
            if not price > 0:
                raise InputError(f"prices.{name}: a price must be > 0, got {price}", str(path))
            try:
                table[get_gpu(name).name] = price
            except InputError as e:
                raise InputError(f"prices.{name}: {e}", str(path)) from None
    return {get_gpu(k).name: v for k, v in table.items()}
