"""Architectures (:class:`NetworkSpec`) and batched functional evaluation of their weights."""

from nnzoo.nets.functional import (flatten, infer_mlp_widths, mlp_forward, params_to_state_dict, siren_init,
                                   state_dict_to_params, unflatten)
from nnzoo.nets.from_module import spec_from_module, spec_from_state_dict
from nnzoo.nets.spec import LayerSpec, NetworkSpec, TensorSlot, mlp_spec, siren_spec

__all__ = ["LayerSpec", "NetworkSpec", "TensorSlot", "flatten", "infer_mlp_widths", "mlp_forward", "mlp_spec",
           "params_to_state_dict", "siren_init", "siren_spec", "spec_from_module", "spec_from_state_dict",
           "state_dict_to_params", "unflatten"]
