"""What a broker error means, read from its HTTP status, Alpaca's error code and its message.

Alpaca overloads 403 with code 40310000: it answers insufficient buying power, an order under the crypto
minimum, trading suspended and option-level checks all alike, so the status alone cannot tell the engine
whether to deny one entry, pause a bot or halt the account. The message can. Each pattern below carries the
source it was read from; a message none of them knows falls back to what its status says, never to "fine".

Sources (facts only, no code copied):
- Alpaca OpenAPI spec, trading-api.json as synced in alpacahq/alpaca-mcp-server: POST /v2/orders answers 403
  "Buying power or shares is not sufficient" and 422 "Input parameters are not recognized"; DELETE
  /v2/orders/{id} answers 422 when the order is not cancelable.
- ccxt/ccxt PR #30101: `{"code":40310000,"message":"cost basis must be >= minimal amount of order 10"}` for a
  USD-quoted crypto buy under $10 (paper API, live probe); PR #30103: 40310000 is classified by message
  (insufficient balance, below minimum, trading suspended are different things).
- Petersoj/alpaca-java issue #145: 422 `{"code":42210000,"message":"potential wash trade detected. use
  complex orders"}`; other reports show the same message with 403/40310000 and a `reject_reason` of
  "opposite side market/stop order exists": both are a wash trade here.
- alpacahq/Alpaca-API issue #228: a request with wrong key headers is answered 403 `{"message": "forbidden."}`
  (no code); data-API users report 403 "forbidden" for bad or OAuth keys (alpaca-trade-api-python #367,
  #429). reference/alpaca-api.md §5: the trading API answers bad keys 401 code 40110000.
- alpaca-py tests/trading/trading_client/test_position_routes.py: 403 40310000 "insufficient qty available for
  order (requested: 1000, available: 0)" and "account is not allowed to short".
- Reports of 40310000 "insufficient balance for USD" / "insufficient balance for AVAX" (crypto buys and sells),
  "cannot open a long buy while a short sell order is open", 40310100 "trade denied due to pattern day trading
  protection", "account not eligible to trade uncovered option contracts" (collected from public issue
  trackers and code that logs Alpaca's answers).
"""

from __future__ import annotations

from typing import Literal

ErrorReason = Literal[
    "unauthorized",  # bad or missing keys: 401 anywhere, 403 "forbidden." without a code, 403 on the data API
    "insufficient_funds",  # not enough buying power, cash, coins or shares for this order
    "below_minimum",  # under the asset's minimum (the $10 crypto cost basis, a notional or quantity floor)
    "wash_trade",  # our own working order on the other side of the symbol is in the way
    "forbidden",  # any other 403: trading suspended, options level, pattern day trading, shorting not allowed
    "rate_limited",  # 429, or our own budget of requests is spent
    "server_error",  # 5xx
    "invalid",  # 400/422 for the request's form: a bug on our side or a rule the emulator does not model
    "not_found",  # 404
    "timeout",  # no answer in time
    "connection",  # refused, reset, DNS
    "bad_response",  # HTML, malformed JSON, a shape the SDK cannot validate, an empty body
    "config",  # the adapter is misconfigured (missing keys, an empty base URL)
    "stopping",  # a read not asked because the run is stopping (never the broker's answer: `BrokerError.held`)
]

# Refusals on the merits of one order (the broker understood it and said no): that bot's denial, counted per kind
# (`refused:<reason>`, engine/trading/orders.py) and pausing it after three, never an anomaly of the account nor a
# failure of the broker (`BrokerError.refusal`): not counted towards api_failure_halt. Any other refusal is a rejection.
REFUSALS: frozenset[ErrorReason] = frozenset({"insufficient_funds", "below_minimum", "wash_trade", "forbidden"})
# The request that sends an order, as every adapter names it (`BrokerError.operation`)
SUBMIT_ORDER = "submit_order"

# Message fragments, lower case, checked in this order (a wash-trade refusal also says "order", a minimum says
# "amount"): the first group that matches decides.
WASH_TRADE = (
    "wash trade",  # alpaca-java #145 (422 42210000), and the 403 40310000 variant
    "opposite side",  # reject_reason "opposite side market/stop order exists"
    "cannot open a long buy while a short sell order is open",
    "cannot open a short sell while a long buy order is open",
)
BELOW_MINIMUM = (
    "minimal amount of order",  # ccxt #30101: "cost basis must be >= minimal amount of order 10"
    "must be >=",  # "notional amount must be >= 1.00" (42210000, stocks)
    "min order size",
    "minimum order",
)
INSUFFICIENT = (
    "insufficient",  # "insufficient buying power", "insufficient balance for USD", "insufficient qty available ..."
    "not enough",
)
UNAUTHORIZED = (
    "forbidden",  # Alpaca-API #228: {"message": "forbidden."}
    "not authorized",  # {"code":40110000,"message":"request is not authorized"}
    "unauthorized",
    "access key",
    "api key",
)

REQUEST_NOT_AUTHORIZED = 40110000


def _has(text: str, fragments: tuple[str, ...]) -> bool:
    return any(fragment in text for fragment in fragments)


# Alpaca's words for a feed the account's plan does not include (403 on the stock and option data reads: "subscription
# does not permit querying recent SIP data", "... OPRA data", reference section 9).
PLAN_LACKS_FEED = ("subscription does not permit",)


def plan_lacks_feed(reason: str, message: str) -> bool:
    """Whether a refused data read is the account's plan lacking the feed asked for, by Alpaca's own words: that
    blocks the bots that need the feed, and is not counted as a failure (`SnapshotBroker._read_permitted`). Any
    other 403 (a proxy's "access denied", a message of no known wording) is a failed read, counted as any: unknown
    is never taken for the one refusal the engine can live with."""
    return reason == "forbidden" and _has(message.lower(), PLAN_LACKS_FEED)


def classify(status: int | None, code: int | None, message: str, *, data_api: bool = False) -> ErrorReason:
    """The meaning of one HTTP error answer. `data_api` is True for the market-data hosts, where bad keys
    come back as 403 rather than 401."""
    text = message.lower()
    if status is None:
        return "bad_response"
    if status == 401 or code == REQUEST_NOT_AUTHORIZED:
        return "unauthorized"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    if status == 404:
        return "not_found"
    if _has(text, WASH_TRADE):
        return "wash_trade"
    if _has(text, BELOW_MINIMUM):
        return "below_minimum"
    if _has(text, INSUFFICIENT):
        return "insufficient_funds"
    if status == 403:
        # A coded 403 from the trading API is a business refusal; an uncoded one, or any 403 from the data API
        # that talks of authorisation, is the keys. "subscription does not permit ..." stays forbidden.
        if (code is None or data_api) and _has(text, UNAUTHORIZED):
            return "unauthorized"
        return "forbidden"
    return "invalid"
