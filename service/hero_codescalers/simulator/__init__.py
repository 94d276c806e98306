"""A hero_proc simulator: the contract's methods and semantics, seeding and faults."""

from .seed import Population, seed_population, split_mix
from .server import Simulator
from .store import Faults, RpcFault, Store

__all__ = ["Faults", "Population", "RpcFault", "Simulator", "Store", "seed_population", "split_mix"]
