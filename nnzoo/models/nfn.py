"""NFN-HNP and NFN-NP: permutation equivariant neural functionals (Zhou et al., NeurIPS 2023).

The reference's invariant predictor (``InvariantNFN`` with ``MlpHead``, github AllanYangZhou/nfn
``experiments/models.py``): optional Gaussian Fourier features of every weight and bias, NF-layers with
ReLU between them, then a pooling layer and an MLP head ``Linear -> ReLU -> Dropout`` x 2 -> ``Linear``.
The NF-layers, pooling and encodings come from the authors' own package (PyPI ``nfn==0.1.2``, the code
behind the paper), so only the wiring is nnzoo's: flat parameters -> per-layer ``(B, 1, out, in[, kh, kw])``
weights and ``(B, 1, out)`` biases, the dataset's :class:`Standardize`, and the head.

* ``nfn_hnp`` (HNP: hidden neurons permutable, input and output neurons fixed): the defaults are the
  reference's SIREN classifier (``classify_siren_configs/nfnet/inv_ff.yaml``): 128 Gaussian Fourier features
  of scale 10, three HNP layers of 512 channels, head width 1000 with dropout 0.5; 68,844,330 parameters on
  2-32-32-1 SIRENs.  On the Small CNN Zoo (``predict_gen_configs/nfnet/hnp_inv.yaml``, in
  ``zoo_configs/data/cnn_zoo.yaml``): no Fourier features, channels 16, 16, 5; 2,811,743 parameters.
* ``nfn_np`` (NP: every neuron permutable, so the input/output order must be encoded): on SIRENs the
  reference (``inv_ff_io.yaml``) adds fixed sinusoidal input/output/layer codes (``IOSinusoidalEncoding``,
  6 bands up to frequency 10, layer codes off) to the Fourier features; 45,668,650 parameters.  On the zoo
  (``np_inv.yaml``) every NP layer adds learned input/output embeddings instead (``NP-PosEmb``); 2,031,390.

Both heads pool with ``HNPPool`` as the reference's (W_0 averaged over its rows, the last weight over its
columns, the last bias whole: the fixed input/output neurons survive as features), so the output is
invariant to hidden-neuron permutations only.  Convolution kernels fold into channels (``h * w`` channels
per kernel entry), as NFN does; a layer without bias reads zeros.

Deviations from the reference: standardisation is nnzoo's per (role, layer) one where a dataset asks for
it (NFN-NP on the zoo standardised per entry, which is not equivariant); networks with BatchNorm tensors
are refused (the reference reads weights and biases only, and its layers need one channel count for both);
the sigmoid of the zoo head is the regression task's; no channel dropout or layer norm (off in both
reference configs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nfn.common import ArraySpec, WeightSpaceFeatures
from nfn.common import NetworkSpec as NFNSpec
from nfn.layers import (GaussianFourierFeatureTransform, HNPLinear, HNPPool, IOSinusoidalEncoding, NPLinear,
                        NPPool, TupleOp)
from torch import Tensor, nn

from nnzoo.data.weights import DataInfo, WeightBatch
from nnzoo.errors import NnzooError, check_choice
from nnzoo.models.layers.precision import autocast_off
from nnzoo.models.layers.standardize import Standardize
from nnzoo.models.registry import register_model
from nnzoo.nets.functional import unflatten
from nnzoo.nets.spec import NORM_ROLES, NetworkSpec

POOLS = {"hnp": HNPPool, "np": NPPool}
IO_ENCODINGS = ("sinusoidal", "learned", "none")


def nfn_spec(spec: NetworkSpec) -> NFNSpec:
    """The nfn package's description of an architecture (its layers read kernel sizes and input/output widths)."""
    return NFNSpec([ArraySpec(tuple(layer.weight_shape)) for layer in spec.layers],
                   [ArraySpec((layer.out_features,)) for layer in spec.layers])


def weight_space_features(params: Tensor, spec: NetworkSpec) -> WeightSpaceFeatures:
    """Flat ``(B, P)`` parameters -> nfn's one-channel features (PyTorch weight layouts; zeros for no bias)."""
    layers = unflatten(params, spec)
    weights = tuple(t["weight"].unsqueeze(1) for t in layers)
    biases = tuple((t["bias"] if "bias" in t else params.new_zeros(len(params), layer.out_features)).unsqueeze(1)
                   for t, layer in zip(layers, spec.layers))
    return WeightSpaceFeatures(weights, biases)


def layout(spec: NetworkSpec) -> tuple:
    return tuple((s.layer, s.role, s.shape) for s in spec.slots)


class InvariantNFN(nn.Module):
    """Encodings -> NF-layers with ReLU -> pooling -> MLP head; shared by ``nfn_hnp`` and ``nfn_np``."""

    embedding_head = "head.2"
    """The submodule whose input is a network's embedding (:func:`nnzoo.inference.embed_networks`): the
    first linear layer after the pooling, which it reads flattened."""

    def __init__(self, info: DataInfo, model: str, make_layer: Callable[[NFNSpec, int, int], nn.Module],
                 hidden: Sequence[int], fourier_features: int, fourier_scale: float, head_hidden: int,
                 dropout: float, pool: str, encoding: Callable[[NFNSpec], nn.Module] | None = None,
                 encoding_channels: int = 0) -> None:
        super().__init__()
        spec = info.specs[0]
        if any(s.role in NORM_ROLES for s in spec.slots):
            raise NnzooError(f"{model} reads weights and biases only (as the reference), but dataset "
                             f"'{info.name}' holds {spec.describe()} with BatchNorm tensors; use gnn, transformer "
                             "or statnn")
        if spec.num_layers < 2:
            raise NnzooError(f"{model} (like the reference) needs networks with at least 2 layers, "
                             f"got {spec.describe()}")
        check_choice(f"{model} pool", pool, tuple(POOLS))
        hidden = [int(c) for c in hidden]
        if not hidden or min(hidden) < 1 or fourier_features < 0 or head_hidden < 1:
            raise NnzooError(f"{model} needs a non-empty list of hidden channels >= 1, fourier_features >= 0 and "
                             f"head_hidden >= 1, got {hidden}, {fourier_features}, {head_hidden}")
        if not 0 <= dropout < 1:
            raise NnzooError(f"{model} dropout must be in [0, 1), got {dropout}")
        self.spec = spec
        self.layout = layout(spec)
        self.standardize = Standardize(info.stats)
        space = nfn_spec(spec)
        encoders: list[nn.Module] = []
        channels = 1
        if fourier_features:
            encoders.append(GaussianFourierFeatureTransform(space, channels, fourier_features, fourier_scale))
            channels = 2 * fourier_features
        if encoding is not None:
            encoders.append(encoding(space))
            channels += encoding_channels
        self.encode = nn.Sequential(*encoders)  # identity without encoders
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [make_layer(space, channels, width), TupleOp(nn.ReLU())]
            channels = width
        self.layers = nn.Sequential(*layers)
        pooled = channels * POOLS[pool].get_num_outs(space)
        self.head = nn.Sequential(
            POOLS[pool](space), nn.Flatten(start_dim=-2),
            nn.Linear(pooled, head_hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(head_hidden, head_hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(head_hidden, info.num_outputs))
        self.name = model

    def forward(self, batch: WeightBatch) -> Tensor:
        spec = batch.spec
        if layout(spec) != self.layout:
            raise NnzooError(f"this {self.name} was built for {self.spec.describe()}, got {spec.describe()}")
        x = weight_space_features(self.standardize(spec, batch.flat), spec)
        with autocast_off(x.weights[0].device):  # sin(2 pi B w) of weights ~0.01 needs float32 (as gnn's lift)
            x = self.encode(x)
        return self.head(self.layers(x))


@register_model("nfn_hnp", "NFN-HNP: permutation-equivariant NF-layers (hidden neurons), invariant pooled head "
                "(Zhou et al. 2023)", heterogeneous=False, tasks=("classification", "regression"))
class NFNHNP(InvariantNFN):
    """The reference's HNP ``InvariantNFN``; the defaults are its SIREN-classification configuration.

    ``hidden``: channels of each HNP layer; ``fourier_features``: Gaussian Fourier features per weight
    (``mapping_size``, 0 = raw weights as one channel) of scale ``fourier_scale``; ``head_hidden``: width
    of the head's two hidden layers; ``dropout``: in the head; ``pool``: ``hnp`` (keeps the input/output
    neurons apart, the reference) | ``np`` (averages them too).
    """

    def __init__(self, info: DataInfo, hidden: Sequence[int] = (512, 512, 512), fourier_features: int = 128,
                 fourier_scale: float = 10.0, head_hidden: int = 1000, dropout: float = 0.5,
                 pool: str = "hnp") -> None:
        super().__init__(info, "nfn_hnp", lambda space, c_in, c_out: HNPLinear(space, c_in, c_out), hidden,
                         fourier_features, fourier_scale, head_hidden, dropout, pool)


@register_model("nfn_np", "NFN-NP: NF-layers equivariant to all neuron permutations plus input/output "
                "encodings, invariant pooled head (Zhou et al. 2023)", heterogeneous=False,
                tasks=("classification", "regression"))
class NFNNP(InvariantNFN):
    """The reference's NP ``InvariantNFN``; the defaults are its SIREN-classification configuration.

    As ``nfn_hnp``, plus ``io_encoding``: how the (otherwise permutable) input and output neurons are told
    apart: ``sinusoidal`` (fixed codes of ``io_bands`` bands up to ``io_max_freq`` appended as channels after
    the Fourier features, the reference on SIRENs), ``learned`` (embeddings added in every NP layer, the
    reference on the CNN zoo) or ``none``.
    """

    def __init__(self, info: DataInfo, hidden: Sequence[int] = (512, 512, 512), fourier_features: int = 128,
                 fourier_scale: float = 10.0, head_hidden: int = 1000, dropout: float = 0.5,
                 pool: str = "hnp", io_encoding: str = "sinusoidal", io_bands: int = 6,
                 io_max_freq: float = 10.0) -> None:
        check_choice("nfn_np io_encoding", io_encoding, IO_ENCODINGS)
        encoding = None
        if io_encoding == "sinusoidal":
            if io_bands < 1:
                raise NnzooError(f"nfn_np io_bands must be >= 1, got {io_bands}")
            if info.specs[0].layers[-1].kind == "conv":  # nfn 0.1.2 encodes a conv output layer wrongly
                raise NnzooError("nfn_np io_encoding=sinusoidal cannot encode a convolutional last layer "
                                 f"({info.specs[0].describe()}); use io_encoding=learned")

            def encoding(space):
                return IOSinusoidalEncoding(space, max_freq=io_max_freq, num_bands=io_bands, enc_layers=False)
        learned = io_encoding == "learned"
        super().__init__(info, "nfn_np",
                         lambda space, c_in, c_out: NPLinear(space, c_in, c_out, io_embed=learned), hidden,
                         fourier_features, fourier_scale, head_hidden, dropout, pool, encoding,
                         2 * io_bands + 1 if encoding else 0)
