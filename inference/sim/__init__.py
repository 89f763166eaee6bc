"""The synthetic ISA world: products, influencers, videos with multimodal features, daily
engagement and sales, with known ground truth (see docs/simulator.md).

    from inference.sim import simulate
    world = simulate("small", seed=0)
    world.write_dataset("data/small")          # schemas.dataset format + truth/

or ``liftstream simulate --preset small --seed 0 --out data/small``.
"""

from inference.sim.world import PRESETS, SimConfig, World, simulate

__all__ = ["PRESETS", "SimConfig", "World", "simulate"]
