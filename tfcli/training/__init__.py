"""Training a run directory: the loop (trainer.py), its data (training_data.py), validation and
test scoring (validation.py), the best-checkpoint bookkeeping (best.py), the optimizer and
schedule (optim.py) and torchrun's processes (distributed.py)."""
