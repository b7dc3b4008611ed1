"""One spelling per symbol inside the engine: crypto as BASE/QUOTE (orders and data say BTC/USD, positions
say BTCUSD), stocks as they are, options as OCC symbols."""

from __future__ import annotations

import re
from datetime import date

# The root is the underlying's symbol, or after a corporate action the OCC's adjusted root, which carries a digit
# (SDS1, MDU1): a position in such a contract is still an option, not a share.
_OCC = re.compile(r"(?P<root>[A-Z][A-Z0-9]{0,5})(?P<yy>\d{2})(?P<mm>\d{2})(?P<dd>\d{2})(?P<cp>[CP])(?P<strike>\d{8})", re.ASCII)
_QUOTES = ("USDT", "USDC", "USD", "BTC")


def is_crypto(symbol: str) -> bool:
    return "/" in symbol


def normalize(symbol: str, asset_class: str | None = None) -> str:
    """`BTCUSD` (a crypto position) -> `BTC/USD`; everything else unchanged."""
    if "/" in symbol or asset_class != "crypto":
        return symbol
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return f"{symbol[: -len(quote)]}/{quote}"
    return symbol


def position_path_symbol(symbol: str) -> str:
    """The spelling /v2/positions/{symbol} accepts: no slash."""
    return symbol.replace("/", "")


def occ_symbol(root: str, expiry: date, option_type: str, strike: float) -> str:
    return f"{root}{expiry:%y%m%d}{'C' if option_type == 'call' else 'P'}{round(strike * 1000):08d}"


def parse_occ(symbol: str) -> tuple[str, date, str, float] | None:
    """(root, expiry, 'call'|'put', strike) or None when `symbol` is not an OCC option symbol; ValueError naming it
    when it is written as one with an expiry that is no date (`AAPL261131C00190000`: November 31st)."""
    match = _OCC.fullmatch(symbol)
    if not match:
        return None
    try:
        expiry = date(2000 + int(match["yy"]), int(match["mm"]), int(match["dd"]))
    except ValueError as exc:  # date's own words ("day is out of range for month") named no symbol where they surfaced
        raise ValueError(f"{symbol} is written as an option contract, but its expiry 20{match['yy']}-{match['mm']}-"
                         f"{match['dd']} is no date ({exc})") from None  # fmt: skip
    return match["root"], expiry, "call" if match["cp"] == "C" else "put", int(match["strike"]) / 1000


def asset_class_of(symbol: str) -> str:
    if is_crypto(symbol):
        return "crypto"
    return "us_option" if parse_occ(symbol) else "us_equity"


OPTION_CONTRACT_SIZE = 100.0  # shares per US equity option contract


def contract_multiplier(symbol: str) -> float:
    """Dollars per unit of price per unit of quantity: 100 for an option contract, 1 for shares and coins."""
    return OPTION_CONTRACT_SIZE if asset_class_of(symbol) == "us_option" else 1.0
