"""Print dinosim.config.env_rules.FOOD_OFFSET_REACHED as measured now (after a change to brachiosaurus.xml).

    python scripts/measure_food_reach.py [--samples 2000]
"""

from __future__ import annotations

import argparse
import math

from dinosim.config.env_rules import FOOD_OFFSET_REACHED
from dinosim.envs.brachiosaurus import measure_food_offset_reached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000, help="neck poses per reach")
    args = parser.parse_args()
    points = [(reach, math.floor(measure_food_offset_reached(reach, args.samples) * 100) / 100)
              for reach, _ in FOOD_OFFSET_REACHED]
    print("FOOD_OFFSET_REACHED = (")
    for row in range(0, len(points), 5):
        print("    " + " ".join(f"({r:g}, {d:g})," for r, d in points[row:row + 5]))
    print(")")


if __name__ == "__main__":
    main()
