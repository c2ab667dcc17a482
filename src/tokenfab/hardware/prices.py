"""Priced catalog: what one accelerator costs to buy, in CNY, with the source of every figure.

Prices live in `prices.yaml` beside the chips (value, currency, date, source URL, basis); a
foreign-currency price is converted at the file's dated, sourced exchange rate. Chips without a
sourced price have none: callers say so rather than guess.
"""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tokenfab.errors import DataFileError, UnknownNameError

PRICES_PATH = Path(__file__).with_name("prices.yaml")


class ExchangeRate(BaseModel):
    """CNY per unit of a foreign currency on a date."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate: float = Field(gt=0, description="CNY per one unit of the currency.")
    date: dt.date = Field(description="Day the rate was quoted.")
    source: str = Field(min_length=8, description="URL of the rate.")
    basis: str = Field(min_length=1, description="What the source says.")


class PriceEntry(BaseModel):
    """Purchase price of one accelerator card or module."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: float = Field(gt=0, description="Price in `currency`.")
    currency: str = Field(pattern="^[A-Z]{3}$", description="ISO 4217 code (CNY, USD).")
    date: dt.date = Field(description="When the price was reported.")
    source: str = Field(min_length=8, description="URL of the report.")
    basis: str = Field(min_length=1, description="List price, estimate, derived ... and from what.")


class PriceCatalog(BaseModel):
    """The whole file: prices by chip name and the exchange rates into `currency`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    currency: str = Field(pattern="^CNY$", description="Currency every price is converted into.")
    exchange_rates: dict[str, ExchangeRate] = Field(description="Rates into CNY by currency code.")
    prices: dict[str, PriceEntry] = Field(description="Price by catalog chip name.")

    def cny(self, chip: str) -> float:
        """Price of `chip` in CNY (UnknownNameError when the catalog has no sourced price)."""
        entry = self.prices.get(chip)
        if entry is None:
            raise UnknownNameError("priced chip", chip, self.prices)
        if entry.currency == "CNY":
            return entry.value
        rate = self.exchange_rates.get(entry.currency)
        if rate is None:
            raise DataFileError(f"{PRICES_PATH.name}: no exchange rate for {entry.currency} (price of {chip})")
        return entry.value * rate.rate

    def has(self, chip: str) -> bool:
        return chip in self.prices


@functools.lru_cache(maxsize=4)
def load_prices(path: str | None = None) -> PriceCatalog:
    """Read and validate the priced catalog (the bundled one unless `path` is given)."""
    p = Path(path) if path else PRICES_PATH
    try:
        data = yaml.safe_load(p.read_text())
        return PriceCatalog.model_validate(data)
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise DataFileError(f"price catalog {p}: {str(exc).splitlines()[0]}") from None


def price_cny(chip: str) -> float | None:
    """CNY price of a catalog chip, None where no sourced price exists."""
    cat = load_prices()
    return cat.cny(chip) if cat.has(chip) else None
