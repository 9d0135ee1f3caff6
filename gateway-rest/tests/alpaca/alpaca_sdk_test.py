"""Drives BrokerX's Alpaca-compatible surface with the real alpaca-py SDK.

Run by gateway-rest/tests/alpaca.rs with BROKERX_URL, BUYER_KEY,
BUYER_SECRET, SELLER_KEY, SELLER_SECRET in the environment. Prints
"ALPACA-SDK OK" and exits 0 when every check passes.
"""

import os
import sys
import threading
import time

from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import (
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
)
from alpaca.trading.stream import TradingStream

url = os.environ["BROKERX_URL"]
ws_url = url.replace("http://", "ws://") + "/stream"
buyer = TradingClient(os.environ["BUYER_KEY"], os.environ["BUYER_SECRET"], paper=True, url_override=url)
seller = TradingClient(os.environ["SELLER_KEY"], os.environ["SELLER_SECRET"], paper=True, url_override=url)


def event_name(update):
    return str(getattr(update.event, "value", update.event))


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


account = buyer.get_account()
check(float(account.cash) == 5000.0, f"account cash {account.cash}")
check(account.status.value == "ACTIVE", "account active")
assets = buyer.get_all_assets()
check(any(a.symbol == "AAPL" for a in assets), "assets list AAPL")
check(buyer.get_asset("AAPL").tradable, "AAPL tradable")
check(buyer.get_clock().is_open in (True, False), "clock")

# The trade_updates stream.
updates = []
stream = TradingStream(os.environ["BUYER_KEY"], os.environ["BUYER_SECRET"], paper=True, url_override=ws_url)


async def on_update(update):
    updates.append(update)


stream.subscribe_trade_updates(on_update)
thread = threading.Thread(target=stream.run, daemon=True)
thread.start()
time.sleep(1.0)

# Place, list, get, get by client id, replace, cancel.
order = buyer.submit_order(
    LimitOrderRequest(
        symbol="AAPL", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.GTC,
        limit_price=180.0, client_order_id="sdk-1",
    )
)
check(order.status == OrderStatus.NEW, f"placed: {order.status}")
check(order.client_order_id == "sdk-1", "client_order_id echoed")
open_orders = buyer.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
check([o.id for o in open_orders] == [order.id], "open orders list")
check(buyer.get_order_by_id(order.id).id == order.id, "get by id")
check(buyer.get_order_by_client_id("sdk-1").id == order.id, "get by client order id")
replaced = buyer.replace_order_by_id(order.id, ReplaceOrderRequest(qty=5, limit_price=181.0))
check(float(replaced.qty) == 5 and float(replaced.limit_price) == 181.0, f"replaced: {replaced.qty} @ {replaced.limit_price}")
buyer.cancel_order_by_id(order.id)
check(buyer.get_order_by_id(order.id).status == OrderStatus.CANCELED, "cancelled")
closed = buyer.get_orders(GetOrdersRequest(status=QueryOrderStatus.CLOSED))
check(any(o.id == order.id for o in closed), "closed orders list")

# An error carries code and message.
try:
    buyer.submit_order(
        LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=180.005)
    )
    check(False, "off-tick price refused")
except APIError as error:
    check(error.status_code == 422 and "tick" in str(error.message), f"off-tick refused: {error.status_code} {error.message}")

# A fill: the buyer rests 10 @ 190, the seller sells at market.
bid = buyer.submit_order(
    LimitOrderRequest(symbol="AAPL", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=190.0)
)
sold = seller.submit_order(
    MarketOrderRequest(symbol="AAPL", qty=10, side=OrderSide.SELL, time_in_force=TimeInForce.IOC)
)
check(sold.status == OrderStatus.FILLED, f"market sell filled: {sold.status}")
deadline = time.time() + 10
while time.time() < deadline and not any(event_name(u) == "fill" for u in updates):
    time.sleep(0.05)
fills = [u for u in updates if event_name(u) == "fill"]
check(len(fills) == 1 and fills[0].order.id == bid.id, f"fill received on the stream ({[event_name(u) for u in updates]})")
check(float(fills[0].price) == 190.0 and float(fills[0].qty) == 10, "fill price and qty")
check(any(event_name(u) == "replaced" for u in updates) and any(event_name(u) == "canceled" for u in updates), "replace and cancel updates")

positions = buyer.get_all_positions()
check(len(positions) == 1 and positions[0].symbol == "AAPL" and float(positions[0].qty) == 10, "buyer position")
check(float(buyer.get_open_position("AAPL").avg_entry_price) > 190.0, "avg entry price includes the fee")
seller_positions = seller.get_all_positions()
check(float(seller_positions[0].qty) == 90, "seller position")

# Cancel all.
buyer.submit_order(LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, limit_price=175.0))
responses = buyer.cancel_orders()
check(len(responses) == 1 and responses[0].status == 200, "cancel all")
check(buyer.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN)) == [], "nothing open")

stream.stop()
print("ALPACA-SDK OK", flush=True)
