"""Tools for testing code built on osMarkets: the broker conformance kit
(:mod:`osmarkets.testing.broker_conformance`) and its venues (:mod:`osmarkets.testing.venues`).
"""
