"""Soak benchmark: the webhook port under mixed legitimate and hostile traffic."""
