"""Retention that runs itself: policies declared in a file, fired by a scheduler.

policies.py   the policies file (TOML): read, checked whole, one line when it is wrong
scheduler.py  when each policy is due, firing it through the engine's one cleanup entry
"""

from .policies import TERMINAL, Policy, PolicyFileError, load

__all__ = ["TERMINAL", "Policy", "PolicyFileError", "load"]
