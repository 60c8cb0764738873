"""Optical switch drivers."""

from labkeeper.drivers.optical.polatis import NS, Plan, PolatisClient, SwitchRefused, plan

__all__ = ["NS", "Plan", "PolatisClient", "SwitchRefused", "plan"]
