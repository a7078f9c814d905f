"""``python -m train m3|clamp2 ...`` and ``torchrun --nproc_per_node N -m train ...`` (the CLI's commands)."""

from clamp2_engine.cli.train import train

if __name__ == "__main__":
    train(prog_name="python -m train")
