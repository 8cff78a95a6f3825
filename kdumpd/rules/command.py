"""Placeholder wiring for `kdumpd rule`; the rule engine lands with issue 3."""
