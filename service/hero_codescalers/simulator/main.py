"""`hero_codescalers simulator`: a standalone hero_proc simulator until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import signal
from pathlib import Path

import structlog

from .seed import seed_population, split_mix
from .server import Simulator

log = structlog.get_logger(__name__)


async def run(path: Path, seed_jobs: int, rng_seed: int) -> None:
    sim = Simulator(rng_seed=rng_seed)
    if seed_jobs:
        mix = split_mix(seed_jobs)
        seed_population(sim.store, mix.codescaler, mix.unrelated, mix.lookalike, rng_seed=rng_seed)
        gc.freeze()  # the seeded store is long-lived: keep the cyclic collector off it
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with sim.serve(path):
        log.info(
            "simulator_started",
            socket=str(path),
            jobs=len(sim.store.jobs),
            actions=len(sim.store.actions),
        )
        await stop.wait()
    log.info("simulator_stopped", socket=str(path))
