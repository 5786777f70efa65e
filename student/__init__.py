"""Students: the network interface every policy provides (teacher included) and its implementations.

``residual`` (the teacher's residual MLP at any depth), ``mlp`` (a plain MLP without LayerNorm, for
small embedded controllers) and ``nnx`` (any flax.nnx Module a user passes from Python).
"""

from deepdistill.student.interface import (
    PolicyNetworks,
    architectures,
    make_student,
    networks_from_dict,
    register_architecture,
)

__all__ = [
    "MLPNetworks",
    "NNXNetworks",
    "PolicyNetworks",
    "architectures",
    "load_student",
    "make_student",
    "networks_from_dict",
    "register_architecture",
]


def __getattr__(name):  # the implementations import JAX and flax: load them on first use
    if name == "MLPNetworks":
        from deepdistill.student.mlp import MLPNetworks

        return MLPNetworks
    if name == "NNXNetworks":
        from deepdistill.student.nnx import NNXNetworks

        return NNXNetworks
    raise AttributeError(name)


def load_student(run_dir, step=None):
    """Load a student from a ``distill`` run directory (newest checkpoint unless ``step``)."""
    from deepdistill.core.policy import load_policy_run

    return load_policy_run(run_dir, "student", "--student", step)
