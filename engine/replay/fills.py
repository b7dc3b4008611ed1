"""How orders fill in a backtest: one small dataclass, every default written down and explained (docs/backtest.md).

Recorded data says what traded, not what an order of ours would have got. The model stays simple and
pessimistic where it must guess: a market order waits for the next price after it was sent and pays a slippage;
a limit order fills at its limit (or better, when the bar opens through it) only if the bar's range reaches it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

Timing = Literal["next", "submit"]
MAX_SLIPPAGE_BPS = 10_000  # the whole price
# A commission past these is no broker's (stocks: a few tenths of a cent a share where charged; options: under a
# dollar a contract): a figure such as 1e308 passed "finite, 0 or more", overflowed the cash to -inf and made the
# report's numbers infinite (summary.json no longer JSON).
MAX_COMMISSION_PER_SHARE = 10.0
MAX_COMMISSION_PER_CONTRACT = 100.0


@dataclass(frozen=True)
class FillModel:
    """`timing`:
    - "next" (the default): an order is matched from the next row of its symbol after it was sent: a market order
      at the next bar's open, or the next quote's ask (buy) or bid (sell); a limit order at each later row until
      it fills or ends. An option without its own data fills at the simulator's quote when its underlying next
      moves.
    - "submit": as the simulated exchange does, at the quote standing when the order arrives. This is what a
      replay of a simulated run needs to make the same fills as the run (the parity test); on bars it would trade
      at a price already known when the engine decided.

    Market orders pay `slippage_bps` (basis points of the price, against the order); limit orders never pay it.
    Alpaca charges no commission on stocks or options, so both default to 0: set them to model another broker or
    the regulatory fees. Crypto pays Alpaca's fee out of what it receives (coins for a buy, dollars for a sell):
    `crypto_maker_fee` on limit orders, `crypto_taker_fee` on market orders (Alpaca's lowest volume tier).
    """

    timing: Timing = "next"
    slippage_bps: float = 2.0
    commission_per_share: float = 0.0
    commission_per_contract: float = 0.0
    crypto_maker_fee: float = 0.0015
    crypto_taker_fee: float = 0.0025

    def __post_init__(self) -> None:
        if self.timing not in ("next", "submit"):
            raise ValueError(f"timing must be 'next' or 'submit', not {self.timing!r}")
        for name in ("slippage_bps", "commission_per_share", "commission_per_contract", "crypto_maker_fee", "crypto_taker_fee"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:  # NaN too
                raise ValueError(f"{name} must be a finite number, 0 or more, not {value!r}")
        if self.slippage_bps > MAX_SLIPPAGE_BPS:  # past the whole price a sale would be paid a negative price
            raise ValueError(f"slippage_bps must be at most {MAX_SLIPPAGE_BPS:,} (the whole price), not {self.slippage_bps!r}")
        for name, most in (("commission_per_share", MAX_COMMISSION_PER_SHARE),
                           ("commission_per_contract", MAX_COMMISSION_PER_CONTRACT)):  # fmt: skip
            if getattr(self, name) > most:
                raise ValueError(f"{name} must be at most {most:g} USD (no broker charges more), not {getattr(self, name)!r}")
        for name in ("crypto_maker_fee", "crypto_taker_fee"):
            if getattr(self, name) >= 1:
                raise ValueError(f"{name} is a fraction of the trade, below 1 (0.0025 is 0.25 %), not {getattr(self, name)!r}")

    def slipped(self, price: float, side: str) -> float:
        """A market order's price after slippage: higher for a buy, lower for a sell."""
        move = price * self.slippage_bps / 10_000
        return price + move if side == "buy" else price - move

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
