"""ControlHost ("ligier") protocol: framing, clients and the dispatcher.

The package is the bottom of km3mon's data flow: everything else receives its data
through :class:`Client` (blocking) or :class:`AsyncClient` (asyncio).
"""

from km3mon.controlhost.aio import AsyncClient
from km3mon.controlhost.client import Client, query_status
from km3mon.controlhost.prefix import (
    PREFIX_SIZE,
    ControlHostError,
    FrameDecoder,
    Message,
    encode_frame,
    encode_prefix,
)
from km3mon.controlhost.subscription import Subscription, parse_subscription

__all__ = [
    "PREFIX_SIZE",
    "AsyncClient",
    "Client",
    "ControlHostError",
    "FrameDecoder",
    "Message",
    "Subscription",
    "encode_frame",
    "encode_prefix",
    "parse_subscription",
    "query_status",
]
