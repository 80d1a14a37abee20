"""Applying a checkpoint to networks: read network files, predict, embed and edit, in batches.

Networks come as state-dict files (:func:`network_files`, :func:`read_network`), or in memory as
``nn.Module`` s or state dicts (:func:`predict_networks`, :func:`embed_networks`); the checkpoint is a
module from :func:`nnzoo.pretrained.load_checkpoint`.  Every network is read and matched against the
checkpoint's architectures before the first forward pass, so a bad one stops the call before any output.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nnzoo.checks import check_finite_rows
from nnzoo.errors import NnzooError
from nnzoo.io import existing_output, load_tensors
from nnzoo.nets.graph_spec import GraphSpec
from nnzoo.pretrained import load_checkpoint

if TYPE_CHECKING:
    from nnzoo.nets.spec import NetworkSpec


def read_network(module, path: Path, activation: str | None = None, spec: NetworkSpec | None = None,
                 allow_unseen: bool = False):
    """``(spec, flat parameters, state dict)`` of the network in ``path``, matched against the checkpoint's
    architectures.  A state dict does not say which activation its network uses; when the checkpoint's
    dataset mixes activations on one layout (the Small CNN Zoo's ReLU and tanh CNNs), ``activation`` picks one.
    Nor does it say how many attention heads it has: ``spec`` (``nnzoo predict --spec``) names the graph where
    the checkpoint's architectures differ only in that.  ``allow_unseen`` accepts a ``spec`` outside the
    checkpoint's architectures where its model can read it (:func:`unseen_architecture_problem`)."""
    state = load_tensors(path, "network file")
    spec, flat = _match_state_dict(module.info, state, path, activation, spec,
                                   unseen_reader=module if allow_unseen else None)
    return spec, flat, state


def _match_state_dict(info, state: Any, source: str | Path, activation: str | None = None,
                      spec: NetworkSpec | None = None,
                      option: str = "--activation ", unseen_reader: nn.Module | None = None,
                      ) -> tuple[NetworkSpec, torch.Tensor]:
    """``(spec, flat parameters)`` of state dict ``state``: the checkpoint architecture (of ``info``, a
    :class:`~nnzoo.data.weights.DataInfo`) it fits, one line naming ``source`` when it fits none.  ``spec``
    (e.g. read off an ``nn.Module``) narrows the choice to the checkpoint architectures with its layers;
    ``activation`` (given as ``option``, which errors name) picks among layouts that differ only in it.
    ``unseen_reader`` (the checkpoint's module, when the user allows unseen architectures) takes a ``spec``
    that is none of the checkpoint's as it is, if that module can read it."""
    from nnzoo.nets.functional import state_dict_to_params
    if not isinstance(state, dict):
        raise NnzooError(f"{source} holds a {type(state).__name__}, not a state dict")
    odd = next((k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if odd is not None or not state:
        raise NnzooError(f"{source}: a state dict maps names to tensors, but entry {odd!r} does not"
                         if state else f"{source} is an empty state dict")
    specs = list(info.specs)
    if spec is not None:
        specs = [s for s in specs if _same_layers(s, spec)]
        if not specs and unseen_reader is not None:
            problem = unseen_architecture_problem(unseen_reader, spec)
            if problem:
                raise NnzooError(f"{source} is a {spec.describe()} network, none of the {len(info.specs)} "
                                 f"architecture(s) of '{info.name}', and the checkpoint cannot read it: {problem}")
            return spec, state_dict_to_params(state, spec, source=source)
        if not specs:
            first = info.specs[0].describe() + (", ..." if len(info.specs) > 1 else "")
            raise NnzooError(f"{source} is a {spec.describe()} network, none of the {len(info.specs)} "
                             f"architecture(s) of '{info.name}' ({first}); the input this checkpoint expects: "
                             "nnzoo list checkpoints --details (graph models may read it anyway with "
                             "--allow-unseen, allow_unseen=True in Python)")
    errors, matches = [], []
    for candidate in specs:  # find the dataset architectures this network fits
        try:
            matches.append((candidate, state_dict_to_params(state, candidate, source=source)))
        except NnzooError as exc:
            errors.append(str(exc))
    if not matches:
        raise NnzooError((errors[0] if len(specs) == 1 or info.homogeneous else
                          f"{source} matches none of the {len(specs)} architectures of '{info.name}'")
                         + " (the input this checkpoint expects: nnzoo list checkpoints --details)")
    acts = {s.layers[0].activation for s, _ in matches}
    if activation is not None:
        matches = [(s, f) for s, f in matches if s.layers[0].activation == activation]
        if not matches:
            raise NnzooError(f"{option}{activation}: {source} fits '{info.name}' networks with activation "
                             f"{', '.join(sorted(acts))} only")
    elif len(acts) > 1:
        raise NnzooError(f"{source} fits '{info.name}' networks with activations {', '.join(sorted(acts))}; "
                         f"say which with {option.strip()}")
    if len(matches) > 1 and spec is None:  # tensors of the same shapes: ViT heads, mixed-zoo activations
        graphs = isinstance(matches[0][0], GraphSpec)
        names = ", ".join(s.name if graphs else s.describe() for s, _ in matches)
        read = "net, input_shape=..., graph=True" if graphs else "net"
        raise NnzooError(f"{source} fits {len(matches)} architectures of '{info.name}' that a state dict cannot "
                         f"tell apart ({names}); say which with --spec spec.json, written by json.dump(nnzoo."
                         f"nets.spec_from_module({read}).to_dict(), f) (in Python: spec=, or the nn.Module itself)")
    return matches[0]


def unseen_architecture_problem(module, spec: NetworkSpec) -> str | None:
    """Why checkpoint ``module`` cannot predict for architecture ``spec``, which it never trained on, or None
    when it can: its model must read any layout (the registry's ``heterogeneous``: gnn, transformer, statnn),
    within the model's own size limit (NG-T's ``max_neurons``), and every element of ``spec`` must have a
    trained counterpart (:meth:`~nnzoo.data.weights.DataInfo.unseen_problem`).  What it predicts for such an
    architecture is an extrapolation, measured in the docs (docs/graphs.md, unseen architectures)."""
    from nnzoo.models.registry import MODELS
    name = module.hparams["model"]["name"]
    if name not in MODELS.names() or not MODELS.entry(name).meta.get("heterogeneous", False):
        return f"its model '{name}' reads only the layouts it was built for"
    limit = getattr(module.model, "max_neurons", None)
    if limit is not None and spec.num_nodes > limit:
        return f"it has {spec.num_nodes} neurons, more than '{name}' reads ({limit}, its largest training network)"
    return module.info.unseen_problem(spec)


def _warn_unseen(module, networks: list[tuple], sources: list[str | Path]) -> None:
    """One warning line when some networks are architectures the checkpoint never trained on."""
    from nnzoo.progress import warn
    unseen = [str(source) for (spec, *_), source in zip(networks, sources) if spec not in module.info.specs]
    if unseen:
        listed = ", ".join(unseen[:3]) + (", ..." if len(unseen) > 3 else "")
        warn(f"{len(unseen)} of {len(networks)} network(s) ({listed}) have architectures '{module.info.name}' never "
             "trained on; their predictions extrapolate (see docs/graphs.md, unseen architectures)")


def _same_layers(ours: NetworkSpec, theirs: NetworkSpec) -> bool:
    """Whether checkpoint architecture ``ours`` computes what ``theirs`` (e.g. read off a module) does: the same
    layers and residuals, and the same ``w0`` if it has sines; the output offset is the dataset's convention,
    which a module does not carry."""
    if isinstance(ours, GraphSpec) or isinstance(theirs, GraphSpec):  # graphs: the same graph, whatever its name
        return type(ours) is type(theirs) and replace(ours, name="") == replace(theirs, name="")
    sine = any(layer.activation == "sine" for layer in ours.layers)
    return ours.layers == theirs.layers and ours.residuals == theirs.residuals and (not sine or ours.w0 == theirs.w0)


NETWORK_SUFFIXES = (".pth", ".pt")
"""The network files a folder given to ``nnzoo predict`` contributes."""

DEFAULT_BATCH_SIZE = 64
"""Networks per forward pass of ``nnzoo predict`` (``--batch-size``)."""


def network_files(items: Iterable[str | os.PathLike]) -> list[str]:
    """The network files named by ``nnzoo predict``'s arguments, in order: a file as given; a folder as its
    ``*.pth``/``*.pt`` files (sorted by name, not recursive, hidden files left out); a glob pattern, quoted
    so that the shell leaves it to nnzoo (``'inrs/*.pth'``, ``**`` recursive), as the files it matches,
    sorted.  A folder or pattern that yields no file is one line; a missing file is named when read."""
    files: list[str] = []
    for item in map(os.fspath, items):
        path = Path(item)
        if path.is_dir():
            found = sorted(p.name for p in path.iterdir()
                           if p.suffix in NETWORK_SUFFIXES and not p.name.startswith(".") and p.is_file())
            if not found:
                kinds = ", ".join("*" + suffix for suffix in NETWORK_SUFFIXES)
                raise NnzooError(f"folder {item} holds no network files ({kinds}); pass the files themselves or "
                                 "a quoted pattern such as 'inrs/*.pth'")
            files += [os.path.join(item, name) for name in found]
        elif not path.exists() and glob.has_magic(item):
            found = sorted(f for f in _glob(item) if os.path.isfile(f))
            if not found:
                raise NnzooError(f"no file matches the pattern {item}; check the folder and the pattern")
            files += found
        else:
            files.append(item)  # a file, or a missing one, which read_network names
    return files


def _glob(pattern: str) -> list[str]:
    """``glob.glob(pattern, recursive=True)``, except that ``**`` enters each real folder once: ``glob`` follows
    a symlink to a parent folder round and round (``g/sub/up -> ..``), so ``'g/**/*.pth'`` never ended.  Other
    patterns are ``glob``'s own; a ``**`` match is listed under the first path that reaches its folder."""
    parts = pattern.split(os.sep)
    if "**" not in parts:
        return glob.glob(pattern)
    split = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    top = os.sep.join(parts[:split]) or (os.sep if pattern.startswith(os.sep) else "")
    found: list[str] = []
    seen: set[tuple[str, int]] = set()

    def match(folder: str, i: int) -> None:
        """Add the paths under ``folder`` that match ``parts[i:]``."""
        key = (os.path.realpath(folder or os.curdir), i)
        if key in seen:
            return
        seen.add(key)
        part, last = parts[i], i == len(parts) - 1
        try:
            entries = sorted(os.scandir(folder or os.curdir), key=lambda e: e.name)
        except OSError:
            return
        if part == "**":
            if last:
                found.extend(os.path.join(folder, e.name) for e in entries if not e.name.startswith("."))
            else:
                match(folder, i + 1)  # ** matches no folder at all, too
            for e in entries:
                if not e.name.startswith(".") and e.is_dir():
                    match(os.path.join(folder, e.name), i)
            return
        names = [e.name for e in entries if e.is_dir() or last] if glob.has_magic(part) else [part]
        for name in fnmatch.filter(names, part) if glob.has_magic(part) else names:
            if glob.has_magic(part) and name.startswith(".") and not part.startswith("."):
                continue  # like glob: a wildcard does not match hidden names
            path = os.path.join(folder, name)
            if last:
                if os.path.lexists(path):
                    found.append(path)
            elif os.path.isdir(path):
                match(path, i + 1)

    match(top, split)
    return found


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise NnzooError(f"--batch-size must be a positive integer, got {batch_size!r}")
    return batch_size


def _batches(module, networks: list[tuple], batch_size: int):
    """``(indices, specs, params)`` per forward pass: at most ``batch_size`` consecutive networks, grouped by
    architecture in the order of the checkpoint's specs (as its training batches were); ``indices`` gives
    each row of the batch (in group order, the order of the model's outputs) its place in ``networks``."""
    specs = list(module.info.specs)
    for start in range(0, len(networks), batch_size):
        groups: dict[Any, list[int]] = {}
        for i in range(start, min(start + batch_size, len(networks))):
            groups.setdefault(networks[i][0], []).append(i)
        ordered = sorted(groups, key=lambda spec: specs.index(spec) if spec in specs else len(specs))
        yield ([i for spec in ordered for i in groups[spec]], ordered,
               [torch.stack([networks[i][1] for i in groups[spec]]) for spec in ordered])


def _read_networks(module, files: list[str], activation: str | None = None,
                   spec: NetworkSpec | None = None, allow_unseen: bool = False) -> list[tuple]:
    """Every file read and matched up front, so that a bad one stops the command before any output."""
    read = [read_network(module, Path(file), activation, spec, allow_unseen) for file in files]
    _warn_unseen(module, read, files)
    return read


def _predictions(module, networks: list[tuple], batch_size: int,
                 sources: list[str | Path] | None = None) -> list[dict[str, Any]]:
    """One result per network; ``sources`` name them when the model's answer is not finite (nothing returned)."""
    from nnzoo.data.weights import WeightBatch
    from nnzoo.progress import progress_bar
    info = module.info
    names = info.class_names or [str(i) for i in range(info.num_outputs)]
    results: list[dict[str, Any]] = [{} for _ in networks]
    bar = progress_bar(len(networks), "predicting") if len(networks) > batch_size else nullcontext(lambda n: None)
    with bar as advance, _inference(module):
        for indices, specs, params in _batches(module, networks, batch_size):
            out = module(WeightBatch(specs, _placed(module, params), torch.zeros(len(indices), dtype=torch.long)))
            check_finite_rows(out, [sources[i] if sources else f"network #{i}" for i in indices], "output")
            for row, i in zip(out, indices):
                if info.task == "classification":
                    probs = row.softmax(-1)
                    results[i] = {"prediction": names[int(probs.argmax())],
                                  "probabilities": dict(zip(names, probs.tolist()))}
                else:
                    results[i] = {"prediction": float(row.squeeze().sigmoid())}
            advance(len(indices))
    return results


@contextmanager
def _inference(module) -> Iterator[None]:
    """Eval mode (no dropout; BatchNorm's running statistics) and no gradients, the module's own mode after."""
    training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(training)


def _placed(module, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """``params`` (read as float32 on the CPU) on the device and in the float dtype of ``module``'s weights,
    e.g. float64 after ``module.double()``."""
    weight = next((w for w in module.parameters() if w.is_floating_point()), None)
    return params if weight is None else [p.to(weight.device, weight.dtype) for p in params]


def _not_editing(module, instead: str) -> None:
    if module.info.task == "editing":
        raise NnzooError(f"checkpoint for '{module.info.name}' edits networks; use {instead} (nnzoo predict does)")


def predict_files(module, paths: Iterable[str | os.PathLike], activation: str | None = None,
                  batch_size: int = DEFAULT_BATCH_SIZE, spec: NetworkSpec | None = None,
                  allow_unseen: bool = False) -> list[dict[str, Any]]:
    """Apply a pretrained classifier or regressor to many networks stored as PyTorch state dicts (``.pth``):
    ``{"file", "prediction"[, "probabilities"]}`` per file of :func:`network_files` (``paths`` may name
    folders and glob patterns), in order.  Every file is read and checked before any forward pass (one line
    naming the first bad file); then ``batch_size`` networks go through the model at a time, with the
    results of one network at a time up to float rounding (the models do not mix the networks of a batch).
    ``allow_unseen`` lets a ``spec`` outside the checkpoint's architectures through where the model can read
    it (:func:`unseen_architecture_problem`), with a warning: such predictions extrapolate."""
    _check_batch_size(batch_size)
    _not_editing(module, "edit_files")
    files = network_files(paths)
    read = _read_networks(module, files, activation, spec, allow_unseen)
    predictions = _predictions(module, read, batch_size, files)
    return [{"file": file, **result} for file, result in zip(files, predictions)]


def predict_file(module, path: Path, activation: str | None = None,
                 spec: NetworkSpec | None = None, allow_unseen: bool = False) -> dict[str, Any]:
    """Apply a pretrained classifier or regressor to one network stored as a PyTorch state dict (``.pth``)."""
    _not_editing(module, "edit_file")
    return _predictions(module, _read_networks(module, [str(path)], activation, spec, allow_unseen), 1, [path])[0]


# ------------------------------------------------------------ networks in memory

def _checkpoint_module(checkpoint):
    """The task module of ``checkpoint``: a loaded module as it is, else a file or pretrained name loaded."""
    if isinstance(checkpoint, (str, os.PathLike)):
        return load_checkpoint(checkpoint)
    if not isinstance(checkpoint, nn.Module) or not hasattr(checkpoint, "info"):
        raise NnzooError(f"checkpoint must be a loaded checkpoint (nnzoo.load_checkpoint), a file or a pretrained "
                         f"name, got {type(checkpoint).__name__}")
    return checkpoint


def _networks_in_memory(module, networks: Iterable[nn.Module | Mapping[str, torch.Tensor]],
                        spec: NetworkSpec | None, activation: str | None, allow_unseen: bool = False) -> list[tuple]:
    """``(spec, flat, state dict)`` of every network, all matched against the checkpoint before any forward
    pass.  A module's architecture, activations included, is read off the module
    (:func:`nnzoo.nets.spec_from_module`) unless ``spec`` is given; a state dict is matched as a file is."""
    from nnzoo.nets.from_module import spec_from_module
    shapes = {tuple(s.input_shape) for s in module.info.specs if isinstance(s, GraphSpec)}
    # graph checkpoints read modules by running them on an input of the checkpoint's shape (ViTs, ResNets)
    traced = {"input_shape": next(iter(shapes)), "graph": True} if len(shapes) == 1 else {}
    if isinstance(networks, (nn.Module, Mapping)):
        raise NnzooError(f"networks must be a list of nn.Module or state dicts, got one {type(networks).__name__}; "
                         "pass [network]")
    read = []
    for i, net in enumerate(networks):
        source = f"network #{i} ({type(net).__name__})"
        if isinstance(net, nn.Module):
            try:
                layout = spec if spec is not None else spec_from_module(net, **traced)
            except NnzooError as exc:
                raise NnzooError(f"{source}: {exc}") from None
            state = net.state_dict()
        elif isinstance(net, Mapping):
            layout, state = spec, dict(net)
        else:
            raise NnzooError(f"{source} is neither an nn.Module nor a state dict (a mapping of names to tensors)")
        read.append((*_match_state_dict(module.info, state, source, activation, layout, "activation=",
                                         module if allow_unseen else None), state))
    if not read:
        raise NnzooError("networks is empty; pass at least one nn.Module or state dict")
    _warn_unseen(module, read, [f"network #{i}" for i in range(len(read))])
    return read


def predict_networks(checkpoint, networks: Iterable[nn.Module | Mapping[str, torch.Tensor]],
                     spec: NetworkSpec | None = None, activation: str | None = None,
                     batch_size: int = DEFAULT_BATCH_SIZE, allow_unseen: bool = False) -> list[dict[str, Any]]:
    """Apply a classifier or regressor checkpoint to networks in memory, ``nn.Module`` s or state dicts, with no
    file and no label: ``{"prediction"[, "probabilities"]}`` per network, in order, as :func:`predict_files`
    gives per file.

    ``checkpoint`` is a loaded checkpoint or anything :func:`nnzoo.pretrained.load_checkpoint` takes (a file
    or a pretrained name).  A module's architecture is read off it (:func:`nnzoo.nets.spec_from_module`,
    activations included); ``spec`` (a :class:`~nnzoo.nets.NetworkSpec`) replaces that, for every network,
    and must be one of the checkpoint's architectures (its output offset, which a module does not carry, is
    the checkpoint's).  A state dict without ``spec`` is matched as a file is (``activation`` picks the
    activation where the checkpoint's data has several).  Every network is checked before the first forward
    pass; a mismatch is one :class:`~nnzoo.errors.NnzooError` line naming ``network #i``.  ``allow_unseen``
    accepts architectures outside the checkpoint's where its model can read them
    (:func:`unseen_architecture_problem`), with a warning: those predictions extrapolate."""
    module = _checkpoint_module(checkpoint)
    _check_batch_size(batch_size)
    _not_editing(module, "edit_networks")
    read = _networks_in_memory(module, networks, spec, activation, allow_unseen)
    return _predictions(module, read, batch_size, [f"network #{i}" for i in range(len(read))])


def embed_networks(checkpoint, networks: Iterable[nn.Module | Mapping[str, torch.Tensor]],
                   spec: NetworkSpec | None = None, activation: str | None = None,
                   batch_size: int = DEFAULT_BATCH_SIZE, allow_unseen: bool = False) -> torch.Tensor:
    """``(N, D)`` embeddings of ``N`` networks in memory (``nn.Module`` s or state dicts, read as
    :func:`predict_networks` reads them): the checkpoint's own representation of each network, the vector
    its final head maps to the prediction.  Use it to retrieve similar networks (nearest neighbours) or to
    cluster a collection of networks by what the checkpoint learned to tell apart.

    Which vector that is, each model declares (its ``embedding_head``: the submodule whose input it is).
    Graph models (``gnn``, ``transformer``) compute a state per neuron (``model.node_states(batch)``, rows in
    :func:`~nnzoo.graphs.batch_to_graph` node order, equivariant to hidden-neuron permutations) and pool
    them by concatenating the output neurons' states: ``D = output neurons x hidden`` and, as those neurons
    keep their places, the embedding is invariant to permutations of hidden neurons.  ``dwsnet`` and the NFNs
    embed their invariant pooled features, ``statnn`` its per-tensor statistics; ``mlp`` has no pooled
    representation and editing checkpoints no head to read, so both are refused.  The embedding is computed
    in eval mode, on the device and in the dtype of the checkpoint's weights (``module.double()`` for
    float64)."""
    from nnzoo.data.weights import WeightBatch
    from nnzoo.progress import progress_bar
    module = _checkpoint_module(checkpoint)
    _check_batch_size(batch_size)
    head = _embedding_head(module)
    read = _networks_in_memory(module, networks, spec, activation, allow_unseen)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _, inputs: captured.append(inputs[0].flatten(1)))
    rows: list[torch.Tensor | None] = [None] * len(read)
    bar = progress_bar(len(read), "embedding") if len(read) > batch_size else nullcontext(lambda n: None)
    try:
        with bar as advance, _inference(module):
            for indices, specs, params in _batches(module, read, batch_size):
                captured.clear()
                module(WeightBatch(specs, _placed(module, params), torch.zeros(len(indices), dtype=torch.long)))
                embedded = torch.cat(captured)  # one call per sub-batch, in order, when a model splits a batch
                check_finite_rows(embedded, [f"network #{i}" for i in indices], "embedding")
                for row, i in zip(embedded, indices):
                    rows[i] = row
                advance(len(indices))
    finally:
        hook.remove()
    return torch.stack(rows)  # type: ignore[arg-type]


def _embedding_head(module) -> nn.Module:
    """The submodule whose input is the embedding (the model's ``embedding_head``), or one line saying why
    this checkpoint has none."""
    name = module.hparams["model"]["name"]
    if module.info.task == "editing":
        raise NnzooError(f"checkpoint for '{module.info.name}' edits networks: its {name} ends in one change per "
                         "weight, not in a pooled representation; embed with a classification or regression "
                         "checkpoint")
    path = getattr(module.model, "embedding_head", None)
    if path is None:
        raise NnzooError(f"model '{name}' has no pooled representation to embed (it declares no embedding_head); "
                         "embed with a gnn or transformer checkpoint")
    return module.model.get_submodule(path)


@dataclass
class Edit:
    """One network edited by an editing checkpoint: its new state dict (the input's keys, order and dtypes)
    and ``(H, W)`` renderings of the input, the edit, and the target the checkpoint was trained towards,
    computed from the input's own rendering (e.g. its dilation)."""

    state_dict: dict[str, Any]
    input: torch.Tensor
    edited: torch.Tensor
    target: torch.Tensor
    target_name: str

    @property
    def mse(self) -> float:
        """MSE of the edited rendering against the target."""
        return float((self.edited.clamp(0, 1) - self.target).pow(2).mean())

    @property
    def identity_mse(self) -> float:
        """MSE of the unedited input against the target: the floor an edit must beat."""
        return float((self.input.clamp(0, 1) - self.target).pow(2).mean())


def edit_network(module, spec, flat: torch.Tensor, state: dict[str, Any], source: Path | str = "network") -> Edit:
    """Edit one network (flat parameters of ``spec``) with an editing checkpoint's module."""
    return edit_networks(module, [(spec, flat, state)], [source])[0]


def edit_networks(module, networks: list[tuple], sources: list[Path | str],
                  batch_size: int = DEFAULT_BATCH_SIZE) -> list[Edit]:
    """Edit many networks (``(spec, flat, state)`` as :func:`read_network` gives them), ``batch_size`` per
    forward pass; ``sources`` name them in errors."""
    from nnzoo.data.editing import dilate
    from nnzoo.data.weights import WeightBatch
    from nnzoo.nets.functional import params_into_state_dict
    h, w = module.image_size
    edits: list[Edit | None] = [None] * len(networks)
    for indices, specs, params in _batches(module, networks, _check_batch_size(batch_size)):
        with torch.no_grad():
            edited = module.edit(WeightBatch(specs, params, torch.zeros(len(indices), h * w)))
            inputs = module.render(specs, params).view(-1, h, w)
            outputs = module.render(specs, edited).view(-1, h, w)
        names = [sources[i] for i in indices]  # an edit that is not a number is never written
        check_finite_rows([p for group in edited for p in group], names, "edited network")
        check_finite_rows(outputs, names, "rendering of the edited network")
        targets = dilate(inputs.clamp(0, 1))
        for row, (i, new) in enumerate(zip(indices, (p for group in edited for p in group))):
            spec, _, state = networks[i]
            edits[i] = Edit(params_into_state_dict(new, spec, state, sources[i]), inputs[row], outputs[row],
                            targets[row], "dilated input")
    return edits


def edit_files(module, paths: Iterable[str | os.PathLike], output: Path | None = None, force: bool = False,
               batch_size: int = DEFAULT_BATCH_SIZE) -> list[dict[str, Any]]:
    """Edit the network of every file of :func:`network_files` (``paths`` may name folders and glob
    patterns) and write ``<stem>.<dataset>.pth`` (same state-dict format) and a PNG (input | edited | target)
    for each into ``output`` (default: the input's folder).  Everything is checked before anything is
    written: the output names (none may exist without ``force``, no two inputs may share one) and every
    input file.  Returns what was written, one dict per file, in order."""
    return _edit_files(module, paths, output, force, batch_size, expand=True)


def _edit_files(module, paths, output: Path | None, force: bool, batch_size: int, expand: bool):
    from nnzoo.io import save_tensors
    info = module.info
    if info.task != "editing":
        raise NnzooError(f"checkpoint for '{info.name}' does not edit networks ({info.task}); use predict_files")
    _check_batch_size(batch_size)
    files = network_files(paths) if expand else [os.fspath(p) for p in paths]
    targets = []
    for file in files:
        path = Path(file)
        folder = output if output is not None else path.parent
        if folder.exists() and not folder.is_dir():
            raise NnzooError(f"--output {folder} is a file; pass a folder for the edited networks")
        stem = f"{path.stem}.{info.name}"
        targets.append({"edited": folder / f"{stem}.pth", "picture": folder / f"{stem}.png"})
    first: dict[Path, int] = {}
    for i, target in enumerate(targets):
        j = first.setdefault(target["edited"], i)
        if j != i:
            raise NnzooError(f"{files[j]} and {files[i]} would both be edited into {target['edited']}; give each "
                             "input once, and edit inputs of the same name in separate --output folders")
    taken = next((f for t in targets for f in t.values() if existing_output(f, "--output")), None)
    if taken is not None and not force:
        raise NnzooError(f"{taken} exists; pass --force to replace it, or choose another --output folder")
    edits = edit_networks(module, _read_networks(module, files), [Path(f) for f in files], batch_size)
    results = []
    for file, edit, target in zip(files, edits, targets):
        target["edited"].parent.mkdir(parents=True, exist_ok=True)
        save_tensors(target["edited"], edit.state_dict)
        save_edit_picture(target["picture"], [edit], [Path(file).name])
        results.append({"file": file, "edited": str(target["edited"]), "picture": str(target["picture"]),
                        "mse": edit.mse, "identity_mse": edit.identity_mse})
    return results


def edit_file(module, path: Path, output: Path | None = None, force: bool = False) -> dict[str, Any]:
    """Edit the network in ``path`` and write ``<stem>.<dataset>.pth`` (same state-dict format) and a PNG
    (input | edited | target) into ``output`` (default: the input's folder).  Returns what was written."""
    result = _edit_files(module, [path], output, force, DEFAULT_BATCH_SIZE, expand=False)[0]
    del result["file"]
    return result


def save_edit_picture(path: Path, edits: list[Edit], names: list[str]) -> None:
    """A PNG with one row per edit: input rendering | edited rendering | target (written atomically)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nnzoo.io import atomic_path
    fig, axes = plt.subplots(len(edits), 3, figsize=(4.5, 1.6 * len(edits) + 0.3), squeeze=False)
    for row, (edit, name) in enumerate(zip(edits, names)):
        panels = [(edit.input, f"input: {name}"[:24]), (edit.edited, f"edited (MSE {edit.mse:.4f})"),
                  (edit.target, edit.target_name)]
        for ax, (image, title) in zip(axes[row], panels):
            ax.imshow(image.clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
