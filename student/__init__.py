"""Students: the network interface every policy provides (teacher included) and its implementations.

``residual`` (the teacher's residual MLP at any depth), ``mlp`` (a plain MLP without LayerNorm, for
small embedded controllers), ``gru`` (a recurrent student for sensors without a full state) and ``nnx``
(any flax.nnx Module a user passes from Python).
"""

from deepdistill.student.interface import (
    ArchitectureError,
    Interface,
    Network,
    NetworksBase,
    PolicyNetworks,
    Size,
    architectures,
    build_student,
    get_architecture,
    is_recurrent,
    make_student,
    networks_from_dict,
    register_architecture,
    register_class,
)

__all__ = [
    "ArchitectureError",
    "Interface",
    "GRUNetworks",
    "MLPNetworks",
    "NNXNetworks",
    "Network",
    "NetworksBase",
    "PolicyNetworks",
    "Size",
    "architectures",
    "build_student",
    "get_architecture",
    "is_recurrent",
    "load_student",
    "make_student",
    "networks_from_dict",
    "register_architecture",
    "register_class",
]


def __getattr__(name):  # the implementations import JAX and flax: load them on first use
    if name == "MLPNetworks":
        from deepdistill.student.mlp import MLPNetworks

        return MLPNetworks
    if name == "GRUNetworks":
        from deepdistill.student.gru import GRUNetworks

        return GRUNetworks
    if name == "NNXNetworks":
        from deepdistill.student.nnx import NNXNetworks

        return NNXNetworks
    raise AttributeError(name)


def load_student(run_dir, step=None):
    """Load a student from a ``distill`` run directory (newest checkpoint unless ``step``)."""
    from deepdistill.student.policy import load_policy_run

    return load_policy_run(run_dir, "student", "--student", step)
