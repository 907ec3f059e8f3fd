"""Brokers: the order model, the simulated broker and the OANDA adapter (no osBrain here)."""

from .base import EVENT_KINDS, ORDER_TYPES, SIDES, Broker, Order, OrderEvent, make_order

__all__ = ["EVENT_KINDS", "ORDER_TYPES", "SIDES", "Broker", "Order", "OrderEvent", "make_order"]
