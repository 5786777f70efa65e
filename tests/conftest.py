import os

# Tests run on the CPU with two virtual devices available for the data-parallel checks.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
