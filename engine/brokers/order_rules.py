"""The form Alpaca's POST /v2/orders takes, checked before a request leaves (the adapter) and refused as Alpaca
refuses it (the sim, and so the emulator). A request of the wrong form is found only in live trading otherwise:
the sim took whatever the engine built, and the real API answered 422.

Sources (docs/alpaca.md, "Values as sent" and "Orders"):
- trading-api.json, POST /v2/orders: `client_order_id` "(<= 128 characters)"; an order's `qty` and `notional`
  "can take up to 9 decimal points"; `notional` "can only work for market order types and day for time in
  force", `qty` "can be fractionable for only market and day order types" (stocks; crypto takes gtc/ioc).
- alpaca-trade-api-go #260, alpaca-trade-api-csharp #497: 422 42210000 "invalid limit_price 11.055. sub-penny
  increment does not fulfill minimum pricing criteria"; a stock price of $1.00 or more takes 2 decimals, under
  $1.00 takes 4 ("AEI shares at $0.6013" went through).
- Public projects quoting Alpaca's refusal of an option order that is not a day order: "order_time_in_force
  provided not supported for options trading"; option orders take whole contracts.
"""

from __future__ import annotations

import math
import re
from decimal import Context, Decimal, InvalidOperation

from engine.brokers.base import OrderRequest, same_amount
from engine.brokers.symbols import asset_class_of

CLIENT_ORDER_ID_MAX = 128  # trading-api.json: "(<= 128 characters)"
AMOUNT_DECIMALS = 9  # trading-api.json: qty and notional "can take up to 9 decimal points"
# What our client_order_ids are made of (a bot_id, the date, a sequence: see schemas/bots.schema.json): characters
# that travel as they are in a JSON body and in the query of /v2/orders:by_client_order_id.
CLIENT_ORDER_ID = re.compile(rf"[A-Za-z0-9_.-]{{1,{CLIENT_ORDER_ID_MAX}}}", re.ASCII)
_WIDE = Context(prec=400)  # every digit of any finite float's integer part, and the decimals after it
SUB_PENNY_MESSAGE = "sub-penny increment does not fulfill minimum pricing criteria"
OPTION_TIF_MESSAGE = "order_time_in_force provided not supported for options trading"


def decimals(value: float) -> int:
    """How many decimals `value` is written with (its shortest repr): 0.3 has 1, 0.30000000000000004 has 17."""
    exponent = Decimal(repr(value)).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def stock_price_decimals(price: float) -> int:
    """The sub-penny rule: 2 decimals at or above $1.00, 4 below."""
    return 2 if price >= 1.0 else 4


def wire_number(value: float, places: int) -> str | None:
    """`value` as a plain decimal string with at most `places` decimals (never `1e-05`, never a float's tail
    `0.30000000000000004`), or None when that string would be another amount than `value`: an amount is
    written as it is, never moved to fit (the engine rounds its own amounts; see entries.floor_to)."""
    if not math.isfinite(value):
        return None
    try:
        text = Decimal(repr(value)).quantize(Decimal(1).scaleb(-places), context=_WIDE)
    except InvalidOperation:
        return None
    if not same_amount(float(text), value) or (text == 0) != (value == 0):  # 1e-12 coins is no "0"
        return None
    plain = format(text, "f")
    return plain.rstrip("0").rstrip(".") if "." in plain else plain


def problem(request: OrderRequest) -> str | None:
    """Why Alpaca would refuse the form of `request` (None when it would not): checked before anything is sent."""
    asset_class = asset_class_of(request.symbol)
    if not CLIENT_ORDER_ID.fullmatch(request.client_order_id):
        return (f"client_order_id {request.client_order_id[:40]!r} is not 1 to {CLIENT_ORDER_ID_MAX} letters, digits, "
                "'_', '-' or '.'")  # fmt: skip
    if (request.qty is None) == (request.notional is None):
        return "an order needs exactly one of qty and notional"
    for name in ("qty", "notional"):
        amount = getattr(request, name)
        if amount is None:
            continue
        if not math.isfinite(amount) or amount <= 0:
            return f"{name} {amount!r} is not a positive amount"
        if wire_number(amount, AMOUNT_DECIMALS) is None:
            return f"{name} {amount!r} has more than Alpaca's {AMOUNT_DECIMALS} decimals"
    if request.order_type == "limit":
        price = request.limit_price
        if price is None or not math.isfinite(price) or price <= 0:
            return f"a limit order needs a positive limit_price, not {price!r}"
        places = {"us_equity": stock_price_decimals(price), "us_option": 2}.get(asset_class, AMOUNT_DECIMALS)
        if wire_number(price, places) is None:
            return f"limit_price {price!r} of {request.symbol} has more than {places} decimals: {SUB_PENNY_MESSAGE}"
    elif request.limit_price is not None:
        return f"a {request.order_type} order takes no limit_price"
    fractional = request.notional is not None or (request.qty is not None and request.qty != int(request.qty))
    if asset_class == "crypto":
        if request.time_in_force not in ("gtc", "ioc"):
            return f"a crypto order takes time_in_force gtc or ioc, not {request.time_in_force}"
    elif asset_class == "us_option":
        if request.time_in_force != "day":
            return f"{OPTION_TIF_MESSAGE} ({request.time_in_force}; options take day)"
        if fractional:
            return "an option order takes a whole number of contracts (qty), never a fraction or a notional"
    elif fractional and (request.order_type != "market" or request.time_in_force != "day"):
        return "a fractional or notional stock order must be a market order for the day"
    return None
