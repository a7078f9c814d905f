"""M3 pre-training and CLaMP 2 training: data, objectives and one loop for one process or many (DDP).

Entry points: ``clamp2-engine train m3|clamp2``, ``torchrun -m clamp2_engine train ...`` and,
from Python, :func:`train.run.run_m3` / :func:`train.run.run_clamp2`.
"""
