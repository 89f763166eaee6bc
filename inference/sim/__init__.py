"""The synthetic ISA world: products, influencers, videos with multimodal features, daily
engagement and sales, with known ground truth (see docs/simulator.md).

    from inference.sim import simulate
    world = simulate("small", seed=0)
    world.write_dataset("data/small")          # schemas.dataset format + truth/

or ``liftstream simulate --preset small --seed 0 --out data/small``.
"""

import json
from pathlib import Path

from inference.sim.world import PRESETS, SIM_VERSION, SimConfig, World, simulate

__all__ = ["PRESETS", "SIM_VERSION", "SimConfig", "World", "simulate", "stale_world"]


def stale_world(path: str | Path) -> str | None:
    """Why the simulated world in ``path`` is not what this code generates, or None.

    None also for folders that are not simulated worlds (real datasets) or have no meta.json.
    Worlds written before versioning carry no ``simulator_version`` and count as stale."""
    meta_path = Path(path) / "meta.json"
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("simulator") != "inference.sim":
        return None
    found = meta.get("simulator_version")
    if found == SIM_VERSION:
        return None
    return (
        f"{path} was written by simulator version {found or 'unversioned (before versioning)'}, "
        f"this code generates version {SIM_VERSION}; regenerate it with "
        f"`liftstream simulate --preset {meta.get('preset', 'PRESET')} --seed {meta.get('seed', 0)} --out {path}`"
    )
