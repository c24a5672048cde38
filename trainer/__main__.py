"""`repic-train`: GRPO personalization (RePIC recipe). The trainer itself is the GRPO issue's work;
until it lands this entry point says so plainly instead of pretending to train."""
from __future__ import annotations

import argparse
import sys

from repic_desktop import __version__


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="repic-train",
                                description="Fine-tune RePIC on your own people and pets (GRPO + LoRA).")
    p.add_argument("--version", action="version", version=f"repic-train {__version__}")
    p.parse_args(argv)
    print("repic-train: error: the GRPO trainer is not part of this version yet", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
